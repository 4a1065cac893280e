"""Label suggestions: the label head each project learns from its own labelled masks, its training
and gating, the suggestions every predicted or proposed mask carries, and "find every <label>"."""
