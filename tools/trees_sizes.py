"""Print what a trees-seal request and key set weigh for three models of the breast cancer data (the
figures docs/trees.md quotes): the sizes follow from the parameters the build chooses, not from timing.

PYTHONPATH=plugins python tools/trees_sizes.py
"""

from __future__ import annotations

import xgboost
from sei_adapter_trees import backend
from sei_adapter_trees.engine import frontends
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

TOLERANCE = 1e-5  # the adapter's default


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    models = {
        "decision tree, depth 5": frontends.from_sklearn(DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)),
        "random forest 20 x depth 4": frontends.from_sklearn(RandomForestClassifier(20, max_depth=4, random_state=0).fit(X, y)),
        "XGBoost 100 x depth 6": frontends.from_xgboost(xgboost.XGBClassifier(n_estimators=100, max_depth=6, random_state=0).fit(X, y)),
    }  # fmt: skip
    print("| model | splits | rows per batch | bytes up per batch | up per row, full batch | down per batch | relinearization keys |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, ensemble in models.items():
        plan = backend.plan(ensemble, TOLERANCE)
        print(f"| {name} | {len(ensemble.splits)} | {plan.slots:,} | {plan.request_bytes:,} | "
              f"{plan.request_bytes / plan.slots:,.0f} | {plan.response_bytes:,} | {plan.key_bytes:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
