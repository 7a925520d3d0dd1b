"""MediaPipe_Dataset/extract.py: a real person on video and in a photo, the sample format,
stable clip ids, skipped frames, bad inputs, and the round trip into train.py."""
import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, readme_snippet, run_main
import train
from MediaPipe_Dataset import motion, recordings, samples, writing  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "MediaPipe_Dataset"))
import extract  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pose2sim")
CLIP = os.path.join(FIXTURES, "clip_30f_360x640.mp4")          # 30 frames at 30 fps, a person in each
FRAME = os.path.join(FIXTURES, "frame50_540x960.jpg")


def test_without_the_video_extra_it_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)           # import mediapipe now fails
    code = extract.main([CLIP, "--out", str(tmp_path), "--category", "pose", "--label", "correct"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().startswith("error: ") and "pip install -r requirements-video.txt" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "pose").exists()


needs_video = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mediapipe", "cv2")),
    reason="the video extra is not installed here (pip install -r requirements-video.txt); CI installs it")


def run(*argv):
    return run_main(extract, *argv)


def samples_in(folder):
    """{per-frame file name: sample} of folder in either layout: a recording file's frames as the
    per-frame samples --frames would write (`<clip>_<frame>.json`, the shared fields merged in)."""
    found = {}
    for name in sorted(os.listdir(folder)):
        data = json.load(open(os.path.join(folder, name)))
        if "frames" not in data:
            found[name] = data
            continue
        fields = {k: v for k, v in data.items() if k != "frames"}
        for frame in data["frames"]:
            found[f"{data['clip']}_{frame['frame']:06d}.json"] = {**fields, **frame}
    return dict(sorted(found.items()))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The fixture clip (every frame) as correct; the fixture photo and the clip mirrored
    (another recording, with a clip id of its own) as incorrect."""
    import cv2
    root = tmp_path_factory.mktemp("extract")
    out, mirrored = root / "data", root / "mirrored.mp4"
    write_video(mirrored, [cv2.flip(frame, 1) for frame in fixture_frames()])
    first = run(CLIP, "--out", out, "--category", "pose", "--label", "correct", "--fps", "0")
    second = run(FRAME, mirrored, "--out", out, "--category", "pose", "--label", "incorrect", "--fps", "10")
    return {"out": out, "runs": (first, second),
            "correct": out / "pose" / "correct pose", "incorrect": out / "pose" / "incorrect pose"}


@needs_video
def test_the_clip_and_the_photo_are_extracted_in_the_sample_format(extracted):
    (code, out, err), (code2, out2, err2) = extracted["runs"]
    assert code == 0 and code2 == 0, err + err2
    assert "30 samples from 30 sampled frames (0 without a person, 0 with the person too hidden" in out and "frames/s" in out
    video = samples_in(extracted["correct"])
    assert len(video) == 30 and os.listdir(extracted["correct"]) == [f"{next(iter(video.values()))['clip']}.json"]
    clips = {s["clip"] for s in video.values()}
    assert len(clips) == 1 and clips.pop().startswith("clip_30f_360x640-")
    for i, (name, s) in enumerate(video.items()):
        assert name == f"{s['clip']}_{i:06d}.json"
        assert s["label"] == 1 and s["category"] == "pose" and s["frame"] == i
        assert s["timestamp"] == pytest.approx(i / 30, abs=1e-3) and s["source"] == os.path.abspath(CLIP)
        marks = np.array(s["keypoints"])
        assert marks.shape == (33, 4) and np.isfinite(marks).all()
        assert (marks[:, 3] >= 0).all() and (marks[:, 3] <= 1).all()
    (photo,) = [s for s in samples_in(extracted["incorrect"]).values() if s["clip"].startswith("frame50_540x960-")]
    assert photo["label"] == 0 and photo["frame"] == 0 and photo["timestamp"] == 0
    assert "1 sample; clip frame50_540x960-" in out2
    # a person in full view: every landmark is seen, none falls below the default threshold
    assert min(row[3] for row in photo["keypoints"]) >= samples.MIN_VISIBILITY


@needs_video
def test_round_trip_train_reads_every_extracted_sample_and_trains(extracted, tmp_path):
    ds = samples.Dataset(str(extracted["out"]), "pose")
    assert ds.invalid == [] and len(ds.y) == 30 + 1 + 10 and ds.count(1) == 30 and ds.has_clips
    assert len(set(ds.groups)) == 3
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train.main(["--data-dir", str(extracted["out"]), "--models-dir", str(tmp_path / "m"),
                           "--epochs", "2"])
    assert code == 0, err.getvalue()
    assert "skipped" not in err.getvalue() and "validation frames come from the training recordings" in err.getvalue()


@needs_video
def test_clip_ids_are_stable_and_a_rerun_replaces_only_that_files_samples(extracted, tmp_path):
    out = tmp_path / "data"
    assert run(CLIP, "--out", out, "--category", "pose", "--label", "correct", "--fps", "10")[0] == 0
    folder = out / "pose" / "correct pose"
    other = folder / "someone_else_000000.json"
    other.write_text(json.dumps({"keypoints": [0.5] * 28, "clip": "someone_else"}))
    first = samples_in(folder)
    assert len(first) == 11                              # --fps 10 on a 30 fps clip: frames 0, 3, ..., 27
    assert [s["frame"] for n, s in first.items() if n != other.name] == list(range(0, 30, 3))
    assert run(CLIP, "--out", out, "--category", "pose", "--label", "correct", "--fps", "15")[0] == 0
    second = samples_in(folder)
    assert other.name in second and len(second) == 16   # the 10 old samples replaced by 15, no leftovers
    assert {s["clip"] for n, s in second.items() if n != other.name} == {s["clip"] for n, s in first.items()
                                                                         if n != other.name}
    assert not [n for n in os.listdir(folder) if n.startswith(".")]


@needs_video
def test_a_failed_write_leaves_the_earlier_samples_as_they_were(tmp_path, monkeypatch):
    out = tmp_path / "data"
    assert run(CLIP, "--out", out, "--category", "pose", "--label", "correct", "--fps", "10")[0] == 0
    folder = out / "pose" / "correct pose"
    before = samples_in(folder)
    real_dump, calls = json.dump, []

    def failing_dump(obj, f, **kw):
        calls.append(1)
        if len(calls) > 3 or "frames" in obj:      # the recording file, or a frame file past the third
            raise OSError(28, "No space left on device")
        return real_dump(obj, f, **kw)
    monkeypatch.setattr(writing.json, "dump", failing_dump)
    code, _, err = run(CLIP, "--out", out, "--category", "pose", "--label", "correct", "--fps", "5")
    assert code == 1 and "cannot write samples there (No space left on device)" in err and "Traceback" not in err
    assert samples_in(folder) == before and not [n for n in os.listdir(folder) if n.startswith(".")]


def write_video(path, frames, fps=30):
    import cv2
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def fixture_frames():
    import cv2
    capture, frames = cv2.VideoCapture(CLIP), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@needs_video
def test_frames_writes_one_file_per_frame_with_the_samples_of_the_recording_file(tmp_path, extracted):
    code, out, err = run(CLIP, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--fps", "0",
                         "--frames")
    folder = tmp_path / "d" / "pose" / "correct pose"
    assert code == 0 and len(os.listdir(folder)) == 30, err
    assert samples_in(folder) == samples_in(extracted["correct"])       # the same samples, number for number
    first = json.load(open(folder / sorted(os.listdir(folder))[0]))
    assert list(first)[:7] == ["keypoints", "label", "category", "timestamp", "clip", "source", "frame"]
    code, _, err = run(CLIP, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--fps", "0")
    assert code == 0 and len(os.listdir(folder)) == 1, err          # the recording file replaced them
    assert samples_in(folder) == samples_in(extracted["correct"])


@needs_video
def test_frames_without_a_person_are_skipped_and_counted(tmp_path):
    frames = fixture_frames()
    blank = np.zeros_like(frames[0])
    video = tmp_path / "gaps.mp4"
    write_video(video, frames[:10] + [blank] * 5 + frames[10:20])
    code, out, err = run(video, "--out", tmp_path / "data", "--category", "pose", "--label", "correct", "--fps", "0")
    assert code == 0, err
    assert "20 samples from 25 sampled frames (5 without a person, 0 with the person too hidden" in out
    frames_kept = sorted(s["frame"] for s in samples_in(tmp_path / "data" / "pose" / "correct pose").values())
    assert frames_kept == list(range(10)) + list(range(15, 25))


@needs_video
def test_landmarks_returns_hidden_when_train_could_not_place_the_pose():
    from types import SimpleNamespace as NS
    standing = [[0.5, 0.1 + 0.025 * i, 0.0] for i in range(33)]

    def pose_with(visibility):
        marks = [NS(x=x, y=y, z=z, visibility=visibility(i)) for i, (x, y, z) in enumerate(standing)]
        return NS(process=lambda rgb: NS(pose_landmarks=NS(landmark=marks)))
    torso = (11, 12, 23, 24)
    seen = extract.landmarks(pose_with(lambda i: 0.9), None)
    assert len(seen) == 33 and seen[11] == [0.5, 0.375, 0.0, 0.9]
    assert extract.landmarks(pose_with(lambda i: 0.1 if i in torso else 0.9), None) == "hidden"
    assert extract.landmarks(pose_with(lambda i: 0.1 if i in torso[1:] else 0.9), None) != "hidden"  # one shoulder
    assert extract.landmarks(NS(process=lambda rgb: NS(pose_landmarks=None)), None) is None


@needs_video
def test_frames_with_the_person_too_hidden_are_skipped_and_counted(tmp_path, monkeypatch):
    real, calls = extract.landmarks, []

    def every_other_frame_hidden(pose, rgb):
        calls.append(1)
        return "hidden" if len(calls) % 2 == 0 else real(pose, rgb)
    monkeypatch.setattr(extract, "landmarks", every_other_frame_hidden)
    code, out, err = run(CLIP, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--fps", "0")
    assert code == 0, err
    assert "15 samples from 30 sampled frames (0 without a person, 15 with the person too hidden" in out
    assert len(samples_in(tmp_path / "d" / "pose" / "correct pose")) == 15


@needs_video
def test_each_bad_input_is_named_and_the_others_are_still_extracted(tmp_path):
    empty_scene = tmp_path / "empty_scene.mp4"
    write_video(empty_scene, [np.full((320, 240, 3), 90, np.uint8)] * 6)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(5000))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    broken_photo = tmp_path / "broken.jpg"
    broken_photo.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "data"
    code, stdout, err = run(empty_scene, corrupt, notes, broken_photo, tmp_path / "missing.mp4", FRAME,
                            "--out", out, "--category", "pose", "--label", "correct")
    assert code == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 5
    assert f"error: {empty_scene}: no person found in any of its" in err
    assert f"error: {corrupt}: " in err and ("cannot be read as a video" in err or "no frame could be decoded" in err)
    assert f"error: {notes}: neither a video nor an image" in err
    assert f"error: {broken_photo}: cannot be read as an image" in err
    assert f"error: {tmp_path / 'missing.mp4'}: no such file or folder" in err
    written = samples_in(out / "pose" / "correct pose")
    assert len(written) == 1 and "5 input(s) failed" in stdout        # the photo still got through


@needs_video
def test_an_out_folder_that_cannot_be_written_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, out, err = run(FRAME, "--out", blocker / "data", "--category", "pose", "--label", "correct")
    assert code == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "cannot write samples there" in line


def test_help_states_the_defaults():
    run_ = subprocess.run([sys.executable, os.path.join(ROOT, "MediaPipe_Dataset", "extract.py"), "--help"],
                          capture_output=True, text=True)
    assert run_.returncode == 0 and "--fps" in run_.stdout and "(default: 10" in run_.stdout
    for bad in (["--fps", "-1"], ["--category", "../x"], ["--label", "good"]):
        with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()):
            extract.parse_args([FRAME, "--out", "d", "--category", "pose", "--label", "correct", *bad])
        assert e.value.code == 2


@needs_video
def test_the_readme_video_snippet_runs_verbatim_on_the_fixture_clip(tmp_path):
    from conftest import build_dataset
    data = build_dataset(tmp_path / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(["--data-dir", data, "--models-dir", str(tmp_path / "models"), "--epochs", "3"]) == 0
    code = readme_snippet("### Classify a video")
    assert code.count("'my_video.mp4'") == 1 and f"MEDIAPIPE_33 = {samples.MEDIAPIPE_33}" in code
    assert f"MIN_VISIBILITY = {samples.MIN_VISIBILITY:g}" in code
    code = code.replace("'my_video.mp4'", repr(CLIP))
    run_ = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert run_.returncode == 0, run_.stderr
    verdict = run_.stdout.split("Video: ")[1]
    assert verdict.split()[0] in ("Correct", "Incorrect") and 0.5 <= float(verdict.split("(")[1].rstrip(")\n")) <= 1


# ----------------------------------------------------------------------------- issue 21
def phone_copy(path):
    """The fixture clip as a phone stores portrait video: frames coded sideways (turned 90
    degrees clockwise) and a display matrix that turns them back."""
    import imageio_ffmpeg
    ffmpeg, sideways = imageio_ffmpeg.get_ffmpeg_exe(), str(path) + ".sideways.mp4"
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", CLIP, "-vf", "transpose=1", "-c:v", "mpeg4",
                    "-q:v", "2", sideways], check=True)
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-display_rotation", "90", "-i", sideways, "-c", "copy",
                    str(path)], check=True)
    os.remove(sideways)


@needs_video
def test_a_phone_video_with_a_rotation_is_extracted_upright(tmp_path, extracted):
    import cv2
    phone = tmp_path / "phone.mp4"
    phone_copy(phone)
    coded = cv2.VideoCapture(str(phone))
    assert coded.get(cv2.CAP_PROP_ORIENTATION_META) == 270 and coded.read()[1].shape[:2] == (360, 640)   # sideways
    code, _, err = run(phone, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--fps", "0")
    assert code == 0, err
    upright = [np.array(s["keypoints"])[:, :2] for s in samples_in(tmp_path / "d" / "pose" / "correct pose").values()]
    original = [np.array(s["keypoints"])[:, :2] for s in samples_in(extracted["correct"]).values()]
    assert len(upright) == len(original) == 30
    for marks in upright:
        assert marks[0, 1] < marks[[23, 24], 1].mean()          # the nose above the hips: standing
    assert np.median([np.abs(a - b)[[0, 11, 12, 23, 24]].max() for a, b in zip(upright, original)]) < 0.05


@needs_video
def test_an_out_folder_inside_an_input_folder_is_skipped_and_other_files_are_listed_once(tmp_path):
    inputs = tmp_path / "media"
    inputs.mkdir()
    (inputs / "photo.jpg").write_bytes(open(FRAME, "rb").read())
    (inputs / "notes.txt").write_text("not media")
    for attempt in range(2):               # the second run walks the samples the first wrote
        code, out, err = run(inputs, "--out", inputs / "data", "--category", "pose", "--label", "correct")
        assert code == 0 and "error" not in err, err
        assert f"Skipped 1 file(s) in the folders given that are neither videos nor images: {inputs / 'notes.txt'}" in out
        assert "Wrote 1 samples" in out
    code, _, err = run(inputs / "notes.txt", "--out", tmp_path / "d", "--category", "pose", "--label", "correct")
    assert code == 1 and "neither a video nor an image" in err          # named: still an error


@needs_video
def test_a_deeply_nested_json_in_the_out_folder_is_not_a_recursion_error(tmp_path):
    folder = tmp_path / "d" / "pose" / "correct pose"
    folder.mkdir(parents=True)
    (folder / "deep.json").write_text("[" * 100000 + "]" * 100000)
    code, _, err = run(FRAME, "--out", tmp_path / "d", "--category", "pose", "--label", "correct")
    assert code == 0 and "Traceback" not in err and (folder / "deep.json").exists()


@needs_video
def test_the_same_input_twice_is_extracted_and_counted_once(tmp_path):
    code, out, _ = run(CLIP, CLIP, os.path.join(FIXTURES, ".", os.path.basename(CLIP)), "--out", tmp_path / "d",
                       "--category", "pose", "--label", "correct", "--fps", "10")
    assert code == 0 and "Wrote 10 samples" in out and out.count("10 samples from") == 1


@needs_video
def test_re_extracting_with_the_other_label_moves_the_samples(tmp_path):
    args = ("--out", tmp_path / "d", "--category", "pose", "--fps", "10")
    assert run(CLIP, *args, "--label", "correct")[0] == 0
    code, out, _ = run(CLIP, *args, "--label", "incorrect")
    assert code == 0 and "removed its 1 earlier sample file(s)" in out
    assert os.listdir(tmp_path / "d" / "pose" / "correct pose") == []
    assert len(samples_in(tmp_path / "d" / "pose" / "incorrect pose")) == 10
    code, out, _ = run(CLIP, *args, "--label", "correct", "--frames")       # and back, one file per frame
    assert code == 0 and "removed its 1 earlier sample file(s)" in out
    assert os.listdir(tmp_path / "d" / "pose" / "incorrect pose") == []
    assert len(os.listdir(tmp_path / "d" / "pose" / "correct pose")) == 10


@pytest.mark.parametrize("bad", [["--fps", "nan"], ["--fps", "inf"], ["--category", "squat_int8"], ["--category", "squat_motion"]])
def test_values_that_would_give_wrong_samples_are_refused(bad, capsys):
    with pytest.raises(SystemExit) as e:
        extract.parse_args([FRAME, "--out", "d", "--category", "pose", "--label", "correct", *bad])
    assert e.value.code == 2 and capsys.readouterr().err.count("error:") == 1


# ----------------------------------------------------------------------------- --jobs (issue 23)
def test_videos_are_tasks_of_their_own_and_images_come_in_batches():
    inputs = ["a.mp4", "p1.jpg", "p2.png", "b.mov", "p3.jpg", "p4.jpg", "p5.jpg"]
    tasks = extract.make_tasks(inputs, jobs=2)
    assert tasks == [[(0, "a.mp4")], [(1, "p1.jpg"), (2, "p2.png"), (4, "p3.jpg")], [(3, "b.mov")],
                     [(5, "p4.jpg"), (6, "p5.jpg")]]
    assert sorted(i for task in tasks for i, _ in task) == list(range(len(inputs)))
    assert extract.default_jobs(1) == 1 and 1 <= extract.default_jobs(100) <= (os.cpu_count() or 1)


def copies_of_the_clip(folder, n):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"copy{i}.mp4").write_bytes(open(CLIP, "rb").read())
    return sorted(str(p) for p in folder.iterdir())


@needs_video
def test_jobs_1_and_jobs_2_write_byte_identical_samples(tmp_path, extracted):
    import cv2
    mirrored = tmp_path / "mirrored.mp4"
    write_video(mirrored, [cv2.flip(frame, 1) for frame in fixture_frames()])
    inputs = [CLIP, FRAME, mirrored, *copies_of_the_clip(tmp_path / "more", 2)]
    for jobs in ("1", "2"):
        code, out, err = run(*inputs, "--out", tmp_path / jobs, "--category", "pose", "--label", "correct",
                             "--fps", "0", "--jobs", jobs)
        assert code == 0 and f"with {jobs} job(s)" in out, err
    folder = os.path.join("pose", "correct pose")
    one, two = sorted(os.listdir(tmp_path / "1" / folder)), sorted(os.listdir(tmp_path / "2" / folder))
    assert one == two and len(one) == 4 + 1          # a recording file per video, the photo's file
    for name in one:
        assert (tmp_path / "1" / folder / name).read_bytes() == (tmp_path / "2" / folder / name).read_bytes(), name


@needs_video
def test_with_workers_a_bad_input_is_named_and_the_others_are_extracted(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(5000))
    code, out, err = run(CLIP, corrupt, FRAME, "--out", tmp_path / "d", "--category", "pose", "--label", "correct",
                         "--fps", "10", "--jobs", "2")
    assert code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {corrupt}: ") and "1 input(s) failed" in out
    assert len(samples_in(tmp_path / "d" / "pose" / "correct pose")) == 10 + 1


def children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def workers_of(pid):
    def cmdline(p):
        try:
            return open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            return b""
    return [p for p in children(pid) if b"spawn_main" in cmdline(p)]


def start_extraction(tmp_path, n):
    """extract.py with 2 workers on n 120-frame videos (the clip four times, so that each takes
    seconds), once the first is written: the workers hold the next ones."""
    (tmp_path / "videos").mkdir()
    long_clip = fixture_frames() * 4
    write_video(tmp_path / "videos" / "long.mp4", long_clip)
    inputs = []
    for i in range(n):
        inputs.append(str(tmp_path / "videos" / f"copy{i}.mp4"))
        (tmp_path / "videos" / f"copy{i}.mp4").write_bytes((tmp_path / "videos" / "long.mp4").read_bytes() + bytes(i))
    command = [sys.executable, "-u", os.path.join(ROOT, "MediaPipe_Dataset", "extract.py"), *inputs, "--out",
               str(tmp_path / "d"), "--category", "pose", "--label", "correct", "--fps", "0", "--jobs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    assert " samples from " in first, process.stderr.read()
    return process, first


def interrupt_extraction(tmp_path, signum):
    """Stop a 2-worker extraction of 5 videos with signum; it must end in one line, exit 130,
    with both workers gone."""
    process, _ = start_extraction(tmp_path, 5)
    workers = workers_of(process.pid)
    assert len(workers) == 2
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err and "Interrupted: " in err
    assert not [p for p in workers if os.path.exists(f"/proc/{p}") and b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()]


@needs_video
def test_ctrl_c_stops_the_workers_and_leaves_no_partial_files(tmp_path):
    interrupt_extraction(tmp_path, signal.SIGINT)
    names = os.listdir(tmp_path / "d" / "pose" / "correct pose")
    clips = {}
    for s in samples_in(tmp_path / "d" / "pose" / "correct pose").values():
        clips[s["clip"]] = clips.get(s["clip"], 0) + 1
    assert not [n for n in names if n.startswith(".")] and set(clips.values()) == {120}    # whole videos only


def test_ctrl_c_while_an_input_is_written_waits_until_it_is_whole(tmp_path, monkeypatch):
    """A Ctrl-C just after the staging folder is made (CI once left `.extract-*` there) is
    held until the input's file is swapped in and counted, then stops the run."""
    args = extract.parse_args([CLIP, "--out", str(tmp_path), "--category", "pose", "--label", "correct"])
    folder = str(tmp_path / "correct pose")
    os.makedirs(folder)
    mkdtemp = writing.tempfile.mkdtemp

    def interrupted_mkdtemp(**kwargs):
        made = mkdtemp(**kwargs)
        signal.raise_signal(signal.SIGINT)
        return made
    monkeypatch.setattr(writing.tempfile, "mkdtemp", interrupted_mkdtemp)
    samples_ = [("clip", i, i / 10, [0.5] * 28) for i in range(3)]
    written = {}
    with pytest.raises(KeyboardInterrupt):
        extract.write_one(CLIP, (samples_, 3, 0, "video", 1.0, None), args, folder, {}, str(tmp_path / "other"),
                          {}, written)
    assert os.listdir(folder) == ["clip.json"] and written == {"clip": 3}
    assert len(json.load(open(os.path.join(folder, "clip.json")))["frames"]) == 3


@needs_video
def test_a_worker_that_dies_costs_only_the_video_it_held(tmp_path):
    process, first = start_extraction(tmp_path, 5)
    for pid in workers_of(process.pid):
        os.kill(pid, signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in err
    died = [ln for ln in err.splitlines() if "the worker extracting it died (killed by signal 9" in ln]
    written = [ln for ln in (first + out).splitlines() if " samples from " in ln]
    assert 1 <= len(died) <= 2 and len(died) + len(written) == 5
    assert f"; {len(died)} input(s) failed" in out


@needs_video
def test_subject_is_written_into_every_sample_and_train_keeps_people_whole(tmp_path):
    out = tmp_path / "d"
    for i, person in enumerate(("ana", "ben", "chloe")):
        copy = tmp_path / f"{person}.mp4"
        copy.write_bytes(open(CLIP, "rb").read())
        for label in ("correct", "incorrect"):
            video = tmp_path / f"{person}_{label}.mp4"
            video.write_bytes(copy.read_bytes() + bytes(i + (label == "correct")))  # other content: other clip ids
            code, _, err = run(video, "--out", out, "--category", "pose", "--label", label, "--fps", "5",
                               "--subject", person, "--jobs", "1")
            assert code == 0, err
    ds = samples.Dataset(str(out), "pose")
    assert sorted(set(ds.subjects)) == ["ana", "ben", "chloe"] and ds.has_subjects
    from MediaPipe_Dataset import evaluation
    train_rows, val_rows, grouping = evaluation.split(ds, 0.3, 0)
    assert grouping.name == "subject" and not {ds.subjects[i] for i in train_rows} & {ds.subjects[i] for i in val_rows}
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        extract.parse_args([FRAME, "--out", "d", "--category", "pose", "--label", "correct", "--subject", " "])


# ----------------------------------------------------------------------------- issue 19
@needs_video
def test_the_readme_ring_buffer_snippet_runs_verbatim_on_the_fixture_clip(tmp_path):
    from MediaPipe_Dataset.movements import write_movements
    data = write_movements(str(tmp_path / "data"), recordings=4, seconds=3.0)
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(["--data-dir", data, "--models-dir", str(tmp_path / "models"), "--epochs", "2"]) == 0
    code = readme_snippet("### A verdict per movement, live")
    assert code.count("'my_video.mp4'") == 1 and f"MEDIAPIPE_33 = {samples.MEDIAPIPE_33}" in code
    run = lambda video: subprocess.run([sys.executable, "-c", code.replace("'my_video.mp4'", repr(str(video)))],
                                       cwd=tmp_path, capture_output=True, text=True,
                                       env={**os.environ, "PYTHONPATH": ROOT})
    short = run(CLIP)                              # 1 s: shorter than a window, and it says so
    assert short.returncode == 1 and "is shorter than the model's window (1.6 s)" in short.stderr
    write_video(tmp_path / "long.mp4", fixture_frames() * 2)       # 2 s at 30 fps: 20 instants at 10 per second
    run_ = run(tmp_path / "long.mp4")
    assert run_.returncode == 0, run_.stderr
    last, video = run_.stdout.split("Last ")[1].split("; video: ")
    assert last.split(": ")[1].split()[0] in ("Correct", "Incorrect") and video.split()[0] in ("Correct", "Incorrect")
    assert int(video.split("mean of ")[1].split()[0]) == 20 - motion.WINDOW.frames + 1   # one per new frame
    assert "Video: incorrect: " not in run_.stdout                  # no fault model: no fault named


@needs_video
def test_the_ring_buffer_snippet_names_the_fault_with_a_motion_fault_model(tmp_path):
    import glob
    from MediaPipe_Dataset.movements import write_movements
    data = write_movements(str(tmp_path / "data"), recordings=8, seconds=3.0)
    folder = lambda label: os.path.join(data, "curl", f"{label} curl")
    os.rename(folder("correct"), folder("slow"))                 # slow curls are the incorrect ones here,
    os.rename(folder("incorrect"), folder("correct"))            # so that the still fixture person is judged
    os.rename(folder("slow"), folder("incorrect"))               # incorrect and its fault named
    for path in glob.glob(os.path.join(folder("incorrect"), "*.json")) + glob.glob(os.path.join(folder("correct"), "*.json")):
        sample = json.load(open(path))
        sample["label"] = 0 if os.path.dirname(path) == folder("incorrect") else 1
        if sample["label"] == 0:
            sample["fault"] = "rushed" if int(sample["clip"].rsplit("-", 1)[1]) % 2 else "jerky"
        json.dump(sample, open(path, "w"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(["--data-dir", data, "--models-dir", str(tmp_path / "models"), "--epochs", "2"]) == 0
    assert (tmp_path / "models" / "curl_motion_fault.onnx").is_file()
    code = readme_snippet("### A verdict per movement, live").replace("'my_video.mp4'", repr(str(tmp_path / "long.mp4")))
    write_video(tmp_path / "long.mp4", fixture_frames() * 2)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert "; video: Incorrect" in run.stdout, run.stdout
    named = run.stdout.split("Video: incorrect: ")[1]
    assert named.split(" (")[0] in ("jerky", "rushed") and 0 < float(named.split(" (")[1].split(")")[0]) <= 1


# ----------------------------------------------------------------------------- issue 27's edges
@needs_video
def test_a_video_cut_short_is_named_and_fails_the_run(tmp_path):
    import imageio_ffmpeg
    whole, cut = tmp_path / "fast.mp4", tmp_path / "cut.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", CLIP, "-c", "copy",
                    "-movflags", "+faststart", str(whole)], check=True)      # the index first: a cut file opens
    cut.write_bytes(whole.read_bytes()[:int(0.3 * whole.stat().st_size)])
    code, out, err = run(cut, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--fps", "0")
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert code == 1 and f"{cut}: read " in line and "of the 30 frames its header announces" in line
    assert "1 video(s) look cut short" in out and samples_in(tmp_path / "d" / "pose" / "correct pose")


def test_jobs_never_exceed_the_tasks(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(extract, "parallel_outcomes", lambda inputs, args, jobs: started.append(jobs) or iter(()))
    monkeypatch.setattr(extract, "serial_outcomes", lambda inputs, args, progress: started.append(1) or iter(()))
    monkeypatch.setattr(extract, "missing_video_extra", lambda: None)
    videos = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for v in videos:
        v.write_bytes(b"")
    run(*videos, "--out", tmp_path / "d", "--category", "pose", "--label", "correct", "--jobs", "8")
    assert started == [2]


def test_photos_share_one_mediapipe_pose_per_process(monkeypatch):
    made = []

    class Pose:
        def __init__(self, **kwargs):
            made.append(kwargs)

    module = type("module", (), {"Pose": Pose})
    monkeypatch.setattr(extract, "IMAGE_POSES", {})
    assert extract.image_pose(module, 0.5) is extract.image_pose(module, 0.5)
    assert made == [{"static_image_mode": True, "model_complexity": 1, "min_detection_confidence": 0.5}]


@needs_video
def test_sigterm_stops_the_workers_at_once(tmp_path):
    interrupt_extraction(tmp_path, signal.SIGTERM)


@needs_video
def test_fault_is_written_into_every_sample_and_the_statistics_count_it(tmp_path):
    code, out, err = run(CLIP, "--out", tmp_path / "d", "--category", "pose", "--label", "incorrect",
                         "--fault", "hips too high", "--fault", "lean", "--fps", "5")
    written = samples_in(tmp_path / "d" / "pose" / "incorrect pose")
    assert code == 0 and written and all(s["fault"] == ["hips too high", "lean"] for s in written.values())
    (name,) = os.listdir(tmp_path / "d" / "pose" / "incorrect pose")
    rows = recordings.load_rows(str(tmp_path / "d" / "pose" / "incorrect pose" / name), name, 0, samples.MIN_VISIBILITY)
    assert rows.invalid == [] and len(rows.fields) == len(written)
    assert {f["fault"] for f in rows.fields} == {("hips too high", "lean")}      # train.py reads it back


@pytest.mark.parametrize("flags", [["--label", "correct", "--fault", "lean"], ["--label", "incorrect", "--fault", " "]])
def test_a_fault_needs_the_incorrect_label_and_a_name(flags, capsys):
    with pytest.raises(SystemExit) as e:
        extract.parse_args([CLIP, "--out", "x", "--category", "pose", *flags])
    assert e.value.code == 2 and "--fault needs --label incorrect" in capsys.readouterr().err
