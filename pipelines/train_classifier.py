"""Train a scikit-learn classifier on a dataset bundled with scikit-learn and register it
as a new version of the model "<dataset>-rf" (iris-rf, wine-rf, breast_cancer-rf)."""

from typing import Literal

from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from app.pipelines import Params, param, pipeline

LOADERS = {"iris": datasets.load_iris, "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}


class TrainParams(Params):
    dataset: Literal["iris", "wine", "breast_cancer"] = param("iris", help="Bundled scikit-learn dataset")
    n_estimators: int = param(100, ge=1, le=2000, help="Trees in the forest")
    max_depth: int = param(5, ge=1, le=50, help="Maximum depth of each tree")
    test_size: float = param(0.25, ge=0.05, le=0.9, help="Share of rows held out for evaluation")
    seed: int = param(42, ge=0, help="Random seed for the split and the forest")


train = pipeline(
    "train_classifier",
    params=TrainParams,
    description="Loads a bundled dataset, splits it, fits a random forest, evaluates it on held-out rows "
    "and registers it as a new version of the model <dataset>-rf.",
)


@train.step()
def load(ctx):
    """Load the dataset as features X and labels y."""
    data = LOADERS[ctx.params.dataset]()
    ctx.logger.info("loaded %s: %d rows, %d features", ctx.params.dataset, *data.data.shape)
    return {"X": data.data, "y": data.target, "classes": list(data.target_names), "features": list(data.feature_names)}


@train.step(after=[load])
def split(ctx, load):
    """Hold out a stratified test set."""
    X_train, X_test, y_train, y_test = train_test_split(
        load["X"], load["y"], test_size=ctx.params.test_size, random_state=ctx.params.seed, stratify=load["y"]
    )
    ctx.logger.info("train rows: %d, test rows: %d", len(y_train), len(y_test))
    return {
        "X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test, "classes": load["classes"],
        "features": load["features"],
    }


@train.step(after=[split])
def fit(ctx, split):
    """Fit a random forest on the training rows."""
    model = RandomForestClassifier(
        n_estimators=ctx.params.n_estimators, max_depth=ctx.params.max_depth, random_state=ctx.params.seed
    )
    model.fit(split["X_train"], split["y_train"])
    ctx.log_metric("train_accuracy", model.score(split["X_train"], split["y_train"]))
    return model


@train.step(after=[fit, split])
def evaluate(ctx, fit, split):
    """Score the model on the held-out rows."""
    predicted = fit.predict(split["X_test"])
    accuracy = accuracy_score(split["y_test"], predicted)
    f1 = f1_score(split["y_test"], predicted, average="macro")
    ctx.log_metric("accuracy", accuracy)
    ctx.log_metric("f1_macro", f1)
    ctx.logger.info("accuracy %.3f, macro F1 %.3f", accuracy, f1)
    return {
        "accuracy": accuracy, "f1_macro": f1, "truth": split["y_test"], "predicted": predicted,
        "classes": split["classes"],
    }


@train.step(after=[fit, evaluate, split])
def register(ctx, fit, evaluate, split):
    """Register the forest as the next version of <dataset>-rf, with its scores, a
    per-class report and the confusion matrix on the held-out rows, and a profile of the
    training inputs (`reference=`) that the live model's inputs are compared with (drift).
    The predictions' reference is the forest's answers on the held-out rows."""
    classes = evaluate["classes"]
    truth, predicted = evaluate["truth"], evaluate["predicted"]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=range(len(classes)), zero_division=0
    )
    ctx.log_table("Per-class scores on held-out rows", [
        {"class": name, "precision": round(float(p), 3), "recall": round(float(r), 3), "f1": round(float(f), 3),
         "rows": int(n)}
        for name, p, r, f, n in zip(classes, precision, recall, f1, support)
    ])
    ctx.log_confusion_matrix(truth, predicted, labels=list(range(len(classes))), display_labels=classes)
    version = ctx.register_model(
        f"{ctx.params.dataset}-rf", fit, metrics={"accuracy": evaluate["accuracy"], "f1_macro": evaluate["f1_macro"]},
        reference=split["X_train"], feature_names=split["features"], reference_predictions=predicted,
    )
    ctx.logger.info("registered %s-rf v%d", ctx.params.dataset, version)
    return version
