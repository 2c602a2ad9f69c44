"""rankscope.report"""
