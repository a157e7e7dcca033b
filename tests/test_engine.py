"""skad_transfer.engine, the old home of the training core: each name still resolves, with a
FutureWarning naming its new module."""

import importlib

import pytest

import skad_transfer.engine as engine


@pytest.mark.parametrize("name", sorted(engine._NEW_HOMES))
def test_every_old_name_resolves_to_its_new_home_with_a_future_warning(name):
    home = engine._NEW_HOMES[name]
    with pytest.warns(FutureWarning, match=rf"^skad_transfer.engine.{name} moved to {home}.{name}; import it from "):
        value = getattr(engine, name)
    assert value is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error_naming_the_new_package():
    with pytest.raises(AttributeError, match=r"no attribute 'Progress' \(the training core is skad_transfer.training"):
        engine.Progress  # noqa: B018 (replaced by the ProgressBar callback)


def test_from_import_works_through_the_module_getattr():
    with pytest.warns(FutureWarning):
        from skad_transfer.engine import TrainingDivergedError
    from skad_transfer.training import TrainingDivergedError as moved

    assert TrainingDivergedError is moved
