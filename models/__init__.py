"""Catalogue data of vsrife (installed as ``vsrife._catalogue``); see README.md in this folder."""
