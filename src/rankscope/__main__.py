"""``python -m rankscope``: the same as the ``rankscope`` console script."""

if __name__ == "__main__":
    from rankscope._entry import main

    main()
