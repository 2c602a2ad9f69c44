"""rankscope.train"""
