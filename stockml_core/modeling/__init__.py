"""From features to trained, evaluated and explained models.

``labels`` (triple-barrier targets), ``splits`` (purged, embargoed walk-forward folds), ``models``
(RandomForest, XGBoost, the stacking meta-learner), ``training`` (the training set and the typed
``Candidate``), ``evaluation`` (out-of-sample metrics beside naive baselines), ``backtest`` (net P&L of
the signal), ``explain`` (SHAP) and ``error_analysis`` (the error replay buffer, accuracy by group).
"""
