"""What a trained run is used for: visualizations, export (SavedModel, frozen graph, LiteRT), the explorer;
and the flag tables of the docs, derived from the option declarations (flag_table.py)."""
