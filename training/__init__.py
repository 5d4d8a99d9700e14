"""gr-hqarf training package: 6Mod data, three-stage HQARF training, ModRec classifier, evaluation."""
