"""rankscope.probe"""
