"""Data: the embedded digits, the real CIFAR and ImageFolder loaders on fake files, per-worker streams."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dana_ray.data import Streams, TensorImages, WorkerStream, eval_batches, load_dataset, load_digits


def test_digits_ship_with_an_installed_package():
    data = load_dataset("digits")
    assert (len(data.train), len(data.test), data.num_classes, data.in_channels) == (1437, 360, 10, 1)
    x, y = data.train.batch(np.arange(len(data.train)), None)
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-3 and float(x.std()) == pytest.approx(1.0, abs=1e-3)
    assert sorted(set(y.tolist())) == list(range(10))


def test_digits_file_reader_matches_scikit_learn():
    from sklearn.datasets import load_digits as sklearn_digits

    from dana_ray.data import digits_arrays

    images, labels = digits_arrays()
    bunch = sklearn_digits()
    assert np.array_equal(images, bunch.images.astype(np.uint8)) and np.array_equal(labels, bunch.target)


def test_digits_split_is_fixed_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.test.images, b.test.images)
    train = {(*img.flatten().tolist(), int(label)) for img, label in zip(a.train.images, a.train.labels)}
    test = [(*img.flatten().tolist(), int(label)) for img, label in zip(a.test.images, a.test.labels)]
    assert sum(t in train for t in test) < 10  # a few digits are duplicated in the original set


@pytest.mark.parametrize("name,fixture,classes", [("cifar10", "fake_cifar10", 10), ("cifar100", "fake_cifar100", 100)])
def test_cifar_reads_what_torchvision_reads(name, fixture, classes, request, monkeypatch):
    """Our reader of torchvision's CIFAR files gives torchvision's own images, labels and classes (its class
    hashes the files first, which fake files fail: the test skips that check alone)."""
    from torchvision import datasets

    root = request.getfixturevalue(fixture)
    data = load_dataset(name, root)
    reference = getattr(datasets, name.upper())
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    for split, train in ((data.train, True), (data.test, False)):
        theirs = reference(root, train=train, download=False)
        assert torch.equal(split.images, torch.from_numpy(theirs.data).permute(0, 3, 1, 2))
        assert torch.equal(split.labels, torch.tensor(theirs.targets)) and len(theirs.classes) == classes
    assert (len(data.train), len(data.test), data.num_classes, data.in_channels) == (100, 40, classes, 3)
    x, y = WorkerStream(data.train, 16, seed=0, worker=0).batch(0)
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert data.train.crop_padding == 4 and data.train.flip and not data.test.crop_padding


def test_cifar_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(
        ValueError, match=r"data_dir: cifar10 needs the directory .*cifar-10-batches-py.* does not exist"
    ):
        load_dataset("cifar10", str(tmp_path))


def test_cifar_missing_and_corrupted_files_are_a_clear_error(tmp_path, fake_cifar10):
    (tmp_path / "cifar-10-batches-py").mkdir()  # an empty folder: the files are missing
    with pytest.raises(
        ValueError,
        match=r"^data_dir: cifar10 file '.*/batches.meta' is missing; expected "
        r"torchvision's layout .*/cifar-10-batches-py/ \(on host .+\)$",
    ):
        load_dataset("cifar10", str(tmp_path))
    with open(f"{fake_cifar10}/cifar-10-batches-py/data_batch_3", "wb") as f:  # cut short, as by a full disk
        f.write(b"\x80\x04")
    with pytest.raises(ValueError, match=r"^data_dir: cifar10 file '.*/data_batch_3' is unreadable \(.+\) \(on host"):
        load_dataset("cifar10", fake_cifar10)


def test_imagenet_imagefolder(fake_imagenet):
    data = load_dataset("imagenet", fake_imagenet, image_size=16)
    assert (len(data.train), len(data.test), data.num_classes) == (12, 12, 3)
    stream = WorkerStream(data.train, 4, seed=1, worker=2)
    x, y = stream.batch(5)
    assert x.shape == (4, 3, 16, 16)
    x2, y2 = WorkerStream(data.train, 4, seed=1, worker=2).batch(5)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # seeded transforms
    xt, _ = next(eval_batches(data.test, 5))
    assert xt.shape == (5, 3, 16, 16)


def test_imagenet_augmentation_draws_what_torchvision_draws(fake_imagenet):
    """The folder loader splits each transform into its random draws (in image order) and the work (on any
    thread); the result equals torchvision's RandomResizedCrop + flip + normalise applied in turn."""
    from torchvision import transforms as T

    data = load_dataset("imagenet", fake_imagenet, image_size=16)
    indices, generator = np.array([3, 0, 7, 5]), torch.Generator().manual_seed(11)
    x, _ = data.train.batch(indices, torch.Generator().manual_seed(11))
    reference = T.Compose(
        [
            T.RandomResizedCrop(16),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        expected = torch.stack([reference(data.train.folder[int(i)][0]) for i in indices])
    assert torch.equal(x, expected)


@pytest.mark.parametrize("width,height", [(20, 20), (640, 480), (33, 300), (1000, 10)])
def test_folder_draws_are_torchvisions_from_an_explicit_generator(width, height):
    """The crops are torchvision's ``get_params`` written with an explicit generator (so a prefetch thread
    never touches the global one): the same numbers as torchvision's from the global generator, seeded alike,
    including the central-crop fallback of an extreme aspect ratio (1000x10)."""
    from torchvision import transforms as T

    from dana_ray.data.folders import _crop_params, _resized_crop_params

    image = torch.empty(1).expand(3, height, width)
    for seed in range(50):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            expected = T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
            torch.manual_seed(seed)
            expected_crop = T.RandomCrop.get_params(image, (min(width, height) // 2,) * 2) if width == height else None
        assert _resized_crop_params(width, height, torch.Generator().manual_seed(seed)) == expected
        if expected_crop is not None:
            assert (
                _crop_params(width, height, min(width, height) // 2, torch.Generator().manual_seed(seed))
                == expected_crop
            )


def test_prefetched_batches_are_the_batches_asked_for(fake_imagenet):
    """``Streams`` prepares the next batches of the workers served longest ago on a thread; whatever order
    the jobs come in (round robin, random, a jump back as after a restore), each batch equals the one made
    on demand, and the global generator is left alone."""
    data = load_dataset("imagenet", fake_imagenet, image_size=12, threads=2)
    plain, ahead = Streams(data.train, 4, seed=5, prefetch=0), Streams(data.train, 4, seed=5, prefetch=3)
    assert plain.prefetch == 0 and ahead.prefetch == 3
    rng = np.random.default_rng(0)
    order = [(w, k) for k in range(4) for w in range(4)]  # round robin over 4 workers
    next_batch = {w: 4 for w in range(4)}
    for w in rng.integers(0, 4, 12):  # then a random order
        order.append((int(w), next_batch[int(w)]))
        next_batch[int(w)] += 1
    order += [(0, 1), (0, 2), (3, 0)]  # restored to earlier positions
    state = torch.get_rng_state()
    try:
        for w, k in order:
            x1, y1 = plain.batch(w, k)
            x2, y2 = ahead.batch(w, k)
            assert torch.equal(x1, x2) and torch.equal(y1, y2), (w, k)
        assert torch.equal(torch.get_rng_state(), state)
    finally:
        ahead.close()
    assert Streams(load_digits().train, 4, seed=5, prefetch=3).prefetch == 0  # in memory: nothing to prepare


@pytest.mark.parametrize("augmentation", ["none", "cifar", "imagenet"])
def test_imagefolder_augmentations_are_seeded_and_thread_independent(fake_imagenet, augmentation):
    options = dict(augmentation=augmentation, image_size=12, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    one, two = (load_dataset("imagefolder", fake_imagenet, threads=t, **options) for t in (1, 2))
    x1, y1 = WorkerStream(one.train, 4, seed=3, worker=1).batch(2)
    x2, y2 = WorkerStream(two.train, 4, seed=3, worker=1).batch(2)
    assert x1.shape == (4, 3, 12, 12) and torch.equal(x1, x2) and torch.equal(y1, y2)
    WorkerStream(one.train, 4, seed=3, worker=1).batch(3)  # a later batch is made as well
    assert (augmentation == "none") == torch.equal(
        one.train.batch(np.arange(4), torch.Generator().manual_seed(0))[0],
        one.train.batch(np.arange(4), torch.Generator().manual_seed(1))[0],
    )
    test, _ = next(eval_batches(one.test, 5))
    assert test.shape == (5, 3, 12, 12)


def test_arrays_from_an_npz_file(tmp_path):
    from fakedata import make_arrays_npz

    data = load_dataset("arrays", make_arrays_npz(str(tmp_path)))
    assert (len(data.train), len(data.test), data.num_classes, data.in_channels) == (1437, 360, 10, 1)
    x, _ = data.train.batch(np.arange(len(data.train)), None)
    assert abs(float(x.mean())) < 1e-3 and float(x.std()) == pytest.approx(1.0, abs=1e-2)  # its own statistics


def test_folder_and_array_checks_name_what_is_wrong(tmp_path, fake_imagenet):
    import shutil

    from dana_ray.data import check_dataset

    check_dataset("imagefolder", fake_imagenet)
    shutil.rmtree(os.path.join(fake_imagenet, "val", "n00000001"))
    with pytest.raises(
        ValueError, match=r"data_dir: imagefolder under .* has different class folders in train/ and val/"
    ):
        check_dataset("imagefolder", fake_imagenet)
    with pytest.raises(ValueError, match=r"data_dir: arrays needs the file '.*data.npz', which does not exist"):
        check_dataset("arrays", str(tmp_path))
    (tmp_path / "data.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"data_dir: arrays file '.*data.npz' is unreadable"):
        check_dataset("arrays", str(tmp_path))


def test_garbage_cifar_files_are_found_before_loading(tmp_path):
    from fakedata import make_fake_cifar

    from dana_ray.data import check_dataset

    root = make_fake_cifar(str(tmp_path), "cifar10")
    check_dataset("cifar10", root)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"data_dir: cifar10 file '.*data_batch_3' is unreadable \(UnpicklingError"):
        check_dataset("cifar10", root)


def test_unknown_dataset_and_option():
    with pytest.raises(
        ValueError, match="dataset: unknown name 'mnist'; allowed: digits, cifar10, cifar100, imagefolder"
    ):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="dataset_options: unknown option 'image_size' for 'digits'; allowed: none"):
        load_dataset("digits", image_size=8)


# -- augmentation ----------------------------------------------------------------------------------------------


def ramp_images(n=6, size=8):
    img = torch.arange(size * size, dtype=torch.uint8).view(1, 1, size, size).repeat(n, 1, 1, 1)
    return TensorImages(img, torch.zeros(n), mean=(0.0,), std=(1 / 255,), crop_padding=2, flip=True)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    data = ramp_images()
    x, _ = data.batch(np.arange(6), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(data.images.float(), (2, 2, 2, 2))
    for img in x:
        windows = [padded[0, :, t : t + 8, s : s + 8] for t in range(5) for s in range(5)]
        matches = [w for w in windows for cand in (w, w.flip(2)) if torch.allclose(img, cand, atol=1e-3)]
        assert matches, "every augmented image is a crop (maybe flipped) of the padded original"
    assert len({tuple(img.flatten().tolist()) for img in x}) > 1


def test_no_generator_means_no_augmentation():
    data = ramp_images()
    x, _ = data.batch(np.arange(6), None)
    torch.testing.assert_close(x, data.images.float(), atol=1e-3, rtol=0)


# -- streams ---------------------------------------------------------------------------------------------------


def test_stream_passes_cover_every_example_once():
    data = load_dataset("digits").train
    stream = WorkerStream(data, 100, seed=0, worker=0)
    assert stream.batches_per_pass == 14
    first_pass = np.concatenate([stream.indices(k) for k in range(14)])
    assert len(set(first_pass.tolist())) == 1400
    second_pass = np.concatenate([stream.indices(k) for k in range(14, 28)])
    assert not np.array_equal(first_pass, second_pass)


def test_a_batch_depends_only_on_seed_worker_and_position():
    data = load_dataset("digits")
    a = WorkerStream(data.train, 32, seed=3, worker=5)
    forward = [a.batch(k) for k in range(60)]
    b = WorkerStream(data.train, 32, seed=3, worker=5)
    for k in reversed(range(60)):  # any access order
        assert torch.equal(b.batch(k)[0], forward[k][0]) and torch.equal(b.batch(k)[1], forward[k][1])


def test_workers_and_seeds_get_different_streams():
    data = load_dataset("digits").train
    first = lambda seed, worker: WorkerStream(data, 32, seed, worker).indices(0)
    assert not np.array_equal(first(0, 0), first(0, 1))
    assert not np.array_equal(first(0, 0), first(1, 0))


def test_batch_larger_than_data_is_refused():
    with pytest.raises(ValueError, match=r"batch_size: 2000 is larger than the training set \(1437 examples\)"):
        WorkerStream(load_dataset("digits").train, 2000, 0, 0)


BAD_ARRAYS = {
    # what is wrong: (the npz entries changed, what the one-line refusal says)
    "a label beyond the class count": (
        lambda d: {"y_train": np.where(np.arange(len(d["y_train"])) == 3, 57, d["y_train"])},
        r"y_train: label 57 is outside \[0, 10\) \(num_classes 10\)",
    ),
    "a negative label": (
        lambda d: {"y_test": np.where(np.arange(len(d["y_test"])) == 0, -3, d["y_test"])},
        r"y_test: label -3 is outside \[0, 10\)",
    ),
    "fewer labels than examples": (
        lambda d: {"y_train": d["y_train"][:-5]},
        r"y_train: expected one label per example \(1437\), got an array of shape \(1432,\)",
    ),
    "NaN inputs": (
        lambda d: {
            "x_train": np.where(np.arange(d["x_train"].size).reshape(d["x_train"].shape) < 7, np.nan, d["x_train"])
        },
        r"x_train: 7 of its values are not finite \(NaN or inf\)",
    ),
    "float labels": (
        lambda d: {"y_test": d["y_test"].astype(np.float32)},
        r"y_test: expected integer labels, got float32",
    ),
    "no class count": (
        lambda d: {"num_classes": None},
        r"declares no class count: store num_classes in it, or set "
        r"dataset_options: \{num_classes: K\}",
    ),
    "test examples of another shape": (
        lambda d: {"x_test": d["x_test"][:, :, :4]},
        r"x_test: examples of shape \(1, 4, 8\) where x_train's are \(1, 8, 8\)",
    ),
}


@pytest.mark.parametrize("problem", sorted(BAD_ARRAYS))
def test_arrays_whose_contents_are_wrong_are_refused_by_the_check_naming_the_file(tmp_path, problem):
    from fakedata import make_arrays_npz

    from dana_ray.data import check_dataset, load_dataset

    good = np.load(make_arrays_npz(str(tmp_path / "good")) + "/data.npz")
    change, message = BAD_ARRAYS[problem]
    folder = make_arrays_npz(str(tmp_path / "bad"), **change({k: good[k] for k in good.files}))
    with pytest.raises(ValueError, match=rf"data_dir: arrays file '{folder}/data.npz'(: | ).*{message}"):
        check_dataset("arrays", folder)
    with pytest.raises(ValueError, match=message):  # and loading refuses what checking refuses
        load_dataset("arrays", folder)


def test_the_arrays_class_count_is_declared_never_the_largest_label(tmp_path):
    from fakedata import make_arrays_npz

    from dana_ray.data import array_dataset, check_dataset, load_dataset

    folder = make_arrays_npz(str(tmp_path), num_classes=None)
    assert load_dataset("arrays", folder, num_classes=12).num_classes == 12  # the option declares it
    check_dataset("arrays", folder, num_classes=12)
    assert load_dataset("arrays", make_arrays_npz(str(tmp_path / "stored"))).num_classes == 10  # the file does
    with pytest.raises(ValueError, match=r"dataset_options.num_classes: 12 differs from the num_classes 10 stored"):
        load_dataset("arrays", str(tmp_path / "stored"), num_classes=12)
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(TypeError, match="num_classes"):
        array_dataset(x, y, x, y)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"y_train: label 3 is outside \[0, 3\)"):
        array_dataset(x, y, x, y, num_classes=3)


def test_each_data_sets_check_returns_the_shape_its_loader_gives(tmp_path, fake_imagenet):
    """The metadata a sweep fits trials against (``DataShape``) agrees with the data the loaders give."""
    from fakedata import make_arrays_npz, make_fake_cifar

    from dana_ray.data import DataShape, check_dataset, check_generated, load_dataset

    cifar = make_fake_cifar(str(tmp_path / "c10"))
    cases = [
        ("cifar10", cifar, {}),
        ("cifar100", make_fake_cifar(str(tmp_path / "c100"), "cifar100"), {}),
        ("imagefolder", fake_imagenet, {"image_size": 16}),
        ("imagenet", fake_imagenet, {"image_size": 24}),
        ("arrays", make_arrays_npz(str(tmp_path / "arrays")), {}),
    ]
    for name, data_dir, options in cases:
        assert check_dataset(name, data_dir, **options) == DataShape.of(load_dataset(name, data_dir, **options)), name
    assert check_dataset("cifar10", cifar) == DataShape(100, 40, 10, (3, 32, 32))
    assert check_generated("digits", None, {}) == DataShape(1437, 360, 10, (1, 8, 8))


def test_a_cifar_meta_file_missing_or_a_label_beyond_its_classes_is_refused(tmp_path):
    from fakedata import _dump, make_fake_cifar

    from dana_ray.data import check_dataset

    root = make_fake_cifar(str(tmp_path))
    folder = os.path.join(root, "cifar-10-batches-py")
    _dump(os.path.join(folder, "data_batch_2"), {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 10, 1]})
    with pytest.raises(ValueError, match=r"data_batch_2' does not hold rows of 3x32x32 bytes with labels in \[0, 10\)"):
        check_dataset("cifar10", root)
    os.remove(os.path.join(folder, "batches.meta"))
    with pytest.raises(ValueError, match=r"batches.meta' is missing"):
        check_dataset("cifar10", root)


def test_an_image_folder_with_an_empty_val_class_or_an_undecodable_image_is_refused(fake_imagenet):
    import shutil

    from dana_ray.data import check_dataset

    val = os.path.join(fake_imagenet, "val", "n00000001")
    for name in sorted(os.listdir(val)):
        os.remove(os.path.join(val, name))
    with pytest.raises(ValueError, match=rf"data_dir: imagefolder class folder '{val}' holds no image file"):
        check_dataset("imagefolder", fake_imagenet)
    shutil.rmtree(os.path.join(fake_imagenet, "val"))
    shutil.copytree(os.path.join(fake_imagenet, "train"), os.path.join(fake_imagenet, "val"))
    check_dataset("imagefolder", fake_imagenet)
    train = os.path.join(fake_imagenet, "train")
    last_class = sorted(os.listdir(train))[-1]
    first = sorted(os.listdir(os.path.join(train, last_class)))[0]
    with open(os.path.join(train, last_class, first), "wb") as f:
        f.write(b"\x89PNG not really")
    with pytest.raises(
        ValueError, match=r"data_dir: imagefolder image '.*' cannot be decoded \(UnidentifiedImageError\)"
    ):
        check_dataset("imagefolder", fake_imagenet)
