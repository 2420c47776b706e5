"""What scaleahead would have done on a recorded history: the replay through the real
cycle (`backtest`), baselines, a simulated HPA (`hpa_sim`), reports, and the command."""
