"""Docstrings that cannot drift: every public estimator's numpydoc Parameters name its signature's
parameters, in order (scikit-learn's sklearn/tests/test_docstring_parameters.py is the model), and
so do the public methods of the estimators and the public functions of the package's API."""

import inspect

import pytest

numpydoc = pytest.importorskip("numpydoc.docscrape")

import skad_transfer  # noqa: E402
from skad_transfer import export, scoring  # noqa: E402
from skad_transfer.detectors import labels  # noqa: E402

ESTIMATORS = [skad_transfer.ADIBDetector, skad_transfer.ADRADetector, skad_transfer.DeepADDetector,
              skad_transfer.DSVDDDetector, skad_transfer.HSCDetector, skad_transfer.DOCDetector,
              skad_transfer.KNNDetector, skad_transfer.LayerFeatures]
METHODS = ("fit", "score_samples", "decision_function", "predict", "predict_proba", "fit_predict", "transform")
FUNCTIONS = [skad_transfer.resnet26, skad_transfer.register_weights, skad_transfer.register_corpus,
             export.export_onnx, export.onnx_inputs, labels.check_novelty_labels]


def signature_names(function, *, skip_self: bool) -> list[str]:
    names = [p.name for p in inspect.signature(function).parameters.values()
             if p.kind not in (p.VAR_POSITIONAL,)]
    names = [("**" + n if inspect.signature(function).parameters[n].kind == inspect.Parameter.VAR_KEYWORD else n)
             for n in names]
    return names[1:] if skip_self else names


def documented_names(doc) -> list[str]:
    names = []
    for parameter in doc["Parameters"]:
        for name in parameter.name.split(","):
            names.append(name.strip())
    return names


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_the_class_docstring_documents_every_constructor_parameter_in_order(estimator):
    doc = numpydoc.ClassDoc(estimator, config={"show_class_members": False})
    assert documented_names(doc) == signature_names(estimator.__init__, skip_self=True)


@pytest.mark.parametrize("estimator, method", [(cls, m) for cls in ESTIMATORS for m in METHODS if hasattr(cls, m)],
                         ids=lambda v: getattr(v, "__name__", v))
def test_public_methods_document_their_parameters_in_order(estimator, method):
    function = getattr(estimator, method)
    doc = numpydoc.FunctionDoc(function)
    documented = [n.replace("**", "") for n in documented_names(doc)]
    expected = [n.replace("**", "") for n in signature_names(function, skip_self=True)]
    assert documented == expected, f"{estimator.__name__}.{method}"


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_public_functions_document_their_parameters_in_order(function):
    doc = numpydoc.FunctionDoc(function)
    documented = [n.replace("**", "") for n in documented_names(doc)]
    assert documented == [n.replace("**", "") for n in signature_names(function, skip_self=False)]
