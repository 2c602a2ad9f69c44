"""rankscope.models"""
