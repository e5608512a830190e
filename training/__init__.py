"""Workstation side of hemascope: dataset import, training and evaluation."""
