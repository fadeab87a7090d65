"""`make demo`: the movierec platform end to end on embedded defaults."""
