"""rankscope.store"""
