"""rankscope.sweep"""
