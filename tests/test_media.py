"""deid.media: image conversions, clear errors on bad input, atomic writes, video round trips."""

from __future__ import annotations

import io
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from skimage.data import astronaut

from deid.errors import BadInputError, DeidError
from deid.media import (
    VideoReader,
    VideoWriter,
    atomic_write,
    find_ffmpeg,
    is_image,
    is_video,
    iter_media,
    probe_streams,
    read_image,
    write_image,
)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return astronaut()  # 512x512 RGB uint8


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------- reading: formats and modes


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp", ".gif", ".jpg", ".ppm"])
def test_read_common_formats(tmp_path: Path, rgb: np.ndarray, ext: str) -> None:
    path = tmp_path / f"a{ext}"
    options = {".webp": {"lossless": True}, ".jpg": {"quality": 95}}.get(ext, {})
    Image.fromarray(rgb).save(path, **options)
    out = read_image(path)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.writeable
    # GIF quantises to 256 colours, JPEG is lossy; the others are exact.
    tolerance = {".gif": 8.0, ".jpg": 3.0}.get(ext, 0.0)
    assert _mean_abs(out, rgb) <= tolerance


def test_gif_gives_first_frame(tmp_path: Path, rgb: np.ndarray) -> None:
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert _mean_abs(read_image(tmp_path / "anim.gif"), rgb) < 8.0


def test_grayscale_and_palette_become_rgb(tmp_path: Path, rgb: np.ndarray) -> None:
    gray = Image.fromarray(rgb).convert("L")
    gray.save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (512, 512, 3)
    assert np.array_equal(out[..., 0], np.asarray(gray)) and np.array_equal(
        out[..., 0], out[..., 2]
    )

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.save(tmp_path / "pal.png")
    assert np.array_equal(read_image(tmp_path / "pal.png"), np.asarray(palette.convert("RGB")))


def test_alpha_is_composited_over_black(tmp_path: Path, rgb: np.ndarray) -> None:
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 256:] = 255  # right half opaque
    alpha[:100, :100] = 128  # a half-transparent corner
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert np.array_equal(out[:, 256:], rgb[:, 256:])
    assert out[100:, :256].max() == 0  # fully transparent -> black, hidden colours not exposed
    expected = np.rint(rgb[:100, :100] * (128 / 255)).astype(np.uint8)
    assert np.abs(out[:100, :100].astype(int) - expected).max() <= 1

    la = Image.fromarray(np.dstack([rgb[..., 0], alpha]), mode="LA")
    la.save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    assert np.array_equal(out[:, 256:, 1], rgb[:, 256:, 0]) and out[100:, :256].max() == 0


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path: Path, rgb: np.ndarray, ext: str) -> None:
    gray8 = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / f"g16{ext}")  # mode I;16
    out = read_image(tmp_path / f"g16{ext}")
    assert np.array_equal(out[..., 0], gray8)  # clipping would give 255 almost everywhere


def test_16bit_pgm_mode_i_is_scaled(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "g16.pgm"
    gray16 = rgb[..., 1].astype(">u2") * 257
    path.write_bytes(b"P5\n512 512\n65535\n" + gray16.tobytes())  # Pillow reads mode "I"
    assert np.array_equal(read_image(path)[..., 1], rgb[..., 1])


def test_16bit_rgb_png(tmp_path: Path, rgb: np.ndarray) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "rgb16.png"), rgb)


def test_cmyk_jpeg_adobe_inverted(tmp_path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as img:  # Pillow writes Adobe (inverted) CMYK
        assert img.mode == "CMYK" and "adobe" in img.info
    assert _mean_abs(read_image(tmp_path / "cmyk.jpg"), rgb) < 3.0


def test_srgb_or_broken_icc_profile_leaves_pixels(tmp_path: Path, rgb: np.ndarray) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, icc in [("srgb.png", srgb), ("broken.png", b"not a real profile")]:
        Image.fromarray(rgb).save(tmp_path / name, icc_profile=icc)
        assert np.array_equal(read_image(tmp_path / name), rgb)


def test_exif_orientation_applied(tmp_path: Path, rgb: np.ndarray) -> None:
    stored = rgb[:, :400]  # 512 rows x 400 cols as stored in the file
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (400, 512, 3)
    assert _mean_abs(out, np.rot90(stored, k=-1)) < 3.0  # displayed = stored turned clockwise
    assert _mean_abs(out, np.rot90(stored, k=1)) > 20.0


# ---------------------------------------------------------------- reading: bad input


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.jpg"
    Image.fromarray(astronaut()).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a picture\n")
    (tmp_path / "folder.jpg").mkdir()
    return {
        "missing": (tmp_path / "missing.jpg", "no such file"),
        "empty": (tmp_path / "empty.jpg", "empty file"),
        "truncated": (tmp_path / "truncated.jpg", "truncated"),
        "text": (tmp_path / "text.jpg", "not an image"),
        "folder": (tmp_path / "folder.jpg", "is a folder"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "text", "folder"])
def test_bad_image_inputs(tmp_path: Path, case: str) -> None:
    path, reason = _bad_inputs(tmp_path)[case]
    with pytest.raises(BadInputError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_write_read_round_trip(tmp_path: Path, rgb: np.ndarray, ext: str) -> None:
    path = write_image(tmp_path / "deep" / "er" / f"out{ext}", rgb)
    assert path.is_file()
    tolerance = 0.0 if ext in (".png", ".bmp", ".tiff") else 3.0
    assert _mean_abs(read_image(path), rgb) <= tolerance
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp left
    assert (path.stat().st_mode & 0o777) == (0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_gray_rgba_and_mask(tmp_path: Path, rgb: np.ndarray) -> None:
    write_image(tmp_path / "g.png", rgb[..., 0])
    assert np.array_equal(read_image(tmp_path / "g.png")[..., 2], rgb[..., 0])
    mask = rgb[..., 0] > 128
    write_image(tmp_path / "m.png", mask)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")) > 0, mask)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    write_image(tmp_path / "a.png", rgba)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "a.jpg", rgba)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", rgb.astype(np.float32))
    with pytest.raises(BadInputError, match="extension"):
        write_image(tmp_path / "x.xyz", rgb)


def test_crash_mid_write_leaves_no_file(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exploding_encoder(im: Image.Image, fp: io.BufferedWriter, filename: str) -> None:
        fp.write(b"\xff\xd8 half a jpeg")
        raise OSError("disk on fire")

    monkeypatch.setitem(Image.SAVE, "JPEG", exploding_encoder)
    with pytest.raises(OSError, match="disk on fire"):
        write_image(tmp_path / "new" / "out.jpg", rgb)
    assert list((tmp_path / "new").iterdir()) == []  # no target, no temp

    existing = tmp_path / "keep.jpg"
    existing.write_bytes(b"old contents")
    with pytest.raises(OSError, match="disk on fire"):
        write_image(existing, rgb)
    assert existing.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jpg", "new"]


def test_atomic_write_text_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "results" / "r.json"
    with atomic_write(target) as handle:
        json.dump({"fid": 1.5}, handle)
        assert not target.exists()  # nothing visible until the block ends
    assert json.loads(target.read_text()) == {"fid": 1.5}

    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write('{"fid": ')
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"fid": 1.5}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]

    with atomic_write(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(BadInputError, match="is a folder"):
        atomic_write(tmp_path / "results").__enter__()


# ---------------------------------------------------------------- discovery


def test_kinds_and_iter_media(tmp_path: Path) -> None:
    assert is_image("a/B.JPG") and is_image("x.tiff") and not is_image("v.mp4")
    assert is_video("clip.MP4") and is_video("c.avi") and not is_video("a.png")
    for rel in [
        "a.jpg",
        "sub/b.png",
        "sub/deeper/c.mp4",
        "notes.txt",
        ".hidden.jpg",
        ".cache/d.png",
    ]:
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"x")
    (tmp_path / "single.avi").write_bytes(b"x")

    found = list(iter_media([tmp_path / "in", tmp_path / "single.avi"]))
    assert [(str(m.relpath), m.kind) for m in found] == [
        ("a.jpg", "image"),
        ("sub/b.png", "image"),
        ("sub/deeper/c.mp4", "video"),
        ("single.avi", "video"),
    ]
    assert found[1].path == tmp_path / "in" / "sub" / "b.png"
    flat = [str(m.relpath) for m in iter_media(tmp_path / "in", recursive=False)]
    assert flat == ["a.jpg"]
    images = [str(m.relpath) for m in iter_media(str(tmp_path / "in"), kinds=["image"])]
    assert images == ["a.jpg", "sub/b.png"]
    with pytest.raises(BadInputError, match="no such file"):
        list(iter_media([tmp_path / "nope"]))
    with pytest.raises(BadInputError, match="not a supported"):
        list(iter_media([tmp_path / "in" / "notes.txt"]))


# ---------------------------------------------------------------- video


def _frames(rgb: np.ndarray, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    width, height = size
    return [
        np.ascontiguousarray(np.roll(rgb, 8 * i, axis=1)[:height, :width]) for i in range(count)
    ]


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_video_round_trip_keeps_count_and_fps(tmp_path: Path, rgb: np.ndarray, ext: str) -> None:
    size = (160, 128)
    frames = _frames(rgb, 25, size)
    target = tmp_path / "out" / f"clip{ext}"
    with VideoWriter(target, fps=12.5, size=size) as writer:
        for frame in frames:
            writer.write(frame)
        assert not target.exists()  # only a hidden temp while writing
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    with VideoReader(target) as reader:
        assert reader.fps == 12.5 and reader.frame_count == 25 and reader.size == size
        got = list(reader)
        assert len(list(reader)) == 25  # a second pass starts again
    assert len(got) == 25
    errors = [_mean_abs(a, b) for a, b in zip(got, frames, strict=True)]
    assert max(errors) < 8.0, errors


def test_video_writer_exception_removes_partial(tmp_path: Path, rgb: np.ndarray) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous video")
    with pytest.raises(RuntimeError), VideoWriter(target, 10, (64, 48)) as writer:
        writer.write(_frames(rgb, 1, (64, 48))[0])
        raise RuntimeError("anonymizer crashed")
    assert target.read_bytes() == b"previous video"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]

    with VideoWriter(tmp_path / "w.mp4", 10, (64, 48)) as writer:
        with pytest.raises(ValueError, match="shape"):
            writer.write(np.zeros((48, 65, 3), np.uint8))  # OpenCV would drop it silently
        writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(BadInputError, match="extension"):
        VideoWriter(tmp_path / "x.gif", 10, (64, 48))


def test_odd_size_is_padded_not_cropped(tmp_path: Path, rgb: np.ndarray) -> None:
    with (
        pytest.warns(UserWarning, match="odd frame size"),
        VideoWriter(tmp_path / "odd.avi", 10, (63, 47)) as writer,
    ):
        writer.write(_frames(rgb, 1, (63, 47))[0])
    with VideoReader(tmp_path / "odd.avi") as reader:
        assert reader.size == (64, 48)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "folder", "truncated"])
def test_bad_video_inputs(tmp_path: Path, rgb: np.ndarray, case: str) -> None:
    paths = {
        "missing": (tmp_path / "missing.mp4", "no such file"),
        "empty": (tmp_path / "empty.mp4", "empty file"),
        "text": (tmp_path / "text.mp4", "not a readable video"),
        "folder": (tmp_path / "folder.mp4", "is a folder"),
        "truncated": (tmp_path / "half.mp4", "not a readable video"),
    }
    path, reason = paths[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video\n")
    elif case == "folder":
        path.mkdir()
    elif case == "truncated":  # mp4's index (moov) sits at the end: half a file has none
        with VideoWriter(tmp_path / "full.mp4", 10, (64, 48)) as writer:
            for frame in _frames(rgb, 10, (64, 48)):
                writer.write(frame)
        data = (tmp_path / "full.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError) as info:
        VideoReader(path)
    assert str(info.value).startswith(f"{path}: ") and reason in str(info.value)


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    exe = find_ffmpeg()
    if exe is None:
        pytest.skip("no ffmpeg binary (imageio-ffmpeg not installed)")
    return exe


def test_audio_is_copied(tmp_path: Path, ffmpeg: str) -> None:
    source = tmp_path / "talk.mp4"
    lavfi = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-f", "lavfi", "-i", "sine=f=440"]
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", *lavfi, "-t", "1.5", "-c:v", "mpeg4", "-c:a", "aac", source],
        check=True,
    )
    assert any(s.startswith("Audio: aac") for s in probe_streams(source))

    target = tmp_path / "anon.mp4"
    with (
        VideoReader(source) as reader,
        VideoWriter(target, reader.fps, reader.size, audio_from=source) as writer,
    ):
        for frame in reader:
            writer.write(255 - frame)
    streams = probe_streams(target)
    assert any(s.startswith("Video: mpeg4") for s in streams)
    assert any(s.startswith("Audio: aac") for s in streams)
    with VideoReader(target) as reader:
        assert reader.fps == 10 and len(list(reader)) == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anon.mp4", "talk.mp4"]


def test_audio_without_ffmpeg_warns(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deid.media.video as video

    source = tmp_path / "src.avi"
    with VideoWriter(source, 10, (64, 48)) as writer:
        writer.write(_frames(rgb, 1, (64, 48))[0])
    monkeypatch.setattr(video, "find_ffmpeg", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with VideoWriter(tmp_path / "out.avi", 10, (64, 48), audio_from=source) as writer:
            writer.write(_frames(rgb, 1, (64, 48))[0])
    assert any("no ffmpeg" in str(w.message) for w in caught)
    assert (tmp_path / "out.avi").is_file()
    with pytest.raises(DeidError, match="no such file"):
        VideoWriter(tmp_path / "o.mp4", 10, (64, 48), audio_from=tmp_path / "nope.mp4")


def test_warns_when_truncation_detection_is_switched_off(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.warns(RuntimeWarning, match="LOAD_TRUNCATED_IMAGES"):
        read_image(tmp_path / "ok.png")


def test_failed_audio_mux_warns_and_keeps_video(
    tmp_path: Path, rgb: np.ndarray, ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deid.media.video as video

    source = tmp_path / "src.mp4"
    lavfi = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine"]
    subprocess.run([ffmpeg, "-v", "error", "-y", *lavfi, "-t", "0.5", source], check=True)
    monkeypatch.setattr(video, "mux_audio", lambda *args: "Encoder not found")
    expected = pytest.warns(UserWarning, match="could not copy the audio.*Encoder not found")
    with expected, VideoWriter(tmp_path / "out.mp4", 10, (64, 48), audio_from=source) as writer:
        writer.write(_frames(rgb, 1, (64, 48))[0])
    assert not any(s.startswith("Audio") for s in probe_streams(tmp_path / "out.mp4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "src.mp4"]
