from rankscope._entry import main

main()
