"""trees-seal: tree ensembles (scikit-learn, XGBoost, LightGBM) evaluated on SEAL."""
