"""The development suite's tasks: what each kind builds, deterministically, without touching files."""

import numpy as np
import pytest

from skad_transfer.bench.devsuite import (KINDS, SHAPE_CLASSES, TEXTURE_CLASSES, low_resolution, low_resolution_luma,
                                          make_glyphs, make_shapes, make_task, make_textures)


@pytest.mark.parametrize("make, shape, n_classes", [(make_glyphs, (8, 8, 1), 10), (make_shapes, (32, 32, 3), 8),
                                                    (make_textures, (32, 32, 1), 8)])
def test_renderers_give_every_class_in_uint8_nhwc_and_repeat_for_a_seed(make, shape, n_classes):
    X, y = make(3, random_state=0)
    assert X.shape == (3 * n_classes, *shape) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [3] * n_classes
    X_again, y_again = make(3, random_state=0)
    np.testing.assert_array_equal(X, X_again)
    np.testing.assert_array_equal(y, y_again)
    assert not np.array_equal(make(3, random_state=1)[0], X)
    assert X.std() > 20  # images, not blank canvases


@pytest.mark.parametrize("kind", ["glyphs", "shapes", "textures"])
def test_a_rendered_task_is_one_vs_rest_with_training_and_evaluation_from_different_draws(kind):
    task = make_task(kind, 1, n_normal=5, n_eval_per_class=4)
    n_classes = {"glyphs": 10, "shapes": len(SHAPE_CLASSES), "textures": len(TEXTURE_CLASSES)}[kind]
    assert task.X_normal.shape[0] == 5 and task.X_eval.shape[0] == 4 * n_classes
    assert (task.y_eval == 1).sum() == 4 and set(np.unique(task.y_eval)) == {-1, 1}
    train = {row.tobytes() for row in task.X_normal}
    assert not any(row.tobytes() in train for row in task.X_eval)


def test_bad_kinds_classes_and_missing_data_are_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        make_task("mnist", 0)
    with pytest.raises(ValueError, match="normal_class must be in 0..7"):
        make_task("shapes", 8)
    with pytest.raises(ValueError, match="cifar10-jpg.zip: pass data_dir="):
        make_task("cifar10-dev", 0)
    assert len(KINDS) == 5


def test_low_resolution_takes_a_read_only_array_without_a_warning_in_colour_or_luma():
    import warnings

    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    images[..., 0] = 200  # pure red: luma 0.299 * 200
    images.setflags(write=False)  # as the cached datasets are
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = low_resolution_luma(images, 16)
        colour = low_resolution(images, 16, luma=False)
    assert out.shape == (3, 16, 16, 1) and out.dtype == np.uint8
    assert (out == round(0.299 * 200)).all()
    assert colour.shape == (3, 16, 16, 3) and (colour == images[:, ::2, ::2]).all()  # flat: resizing keeps it
