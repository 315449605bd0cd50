"""What a trained run is used for: visualizations, export (SavedModel, frozen graph, LiteRT), the explorer."""
