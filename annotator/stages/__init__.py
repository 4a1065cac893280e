"""Stages 2 and 3 of the data engine (semi-automatic pre-fill, fully automatic generation):
moving a project between stages, generation runs, one item per image done exactly once, and the
``generate`` queue's task."""
