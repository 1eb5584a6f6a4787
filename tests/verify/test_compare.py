"""Equivalence rules and missing-file extraction, on logs real programs print."""

from trimcage.verify.compare import compare, denied_lines, missing_files
from trimcage.verify.interface import RunObservation


def obs(probes=(), alive=True, code=None, log="", error=None):
    return RunObservation(tuple(probes), alive, code, log, error)


HTTP_OK = {"probe": {"http": "http://127.0.0.1:80/"}, "ok": True, "status": 200, "digest": "sha256:aa"}


def test_equal_runs_have_no_difference():
    assert compare(obs([HTTP_OK]), obs([HTTP_OK])) == []


def test_probe_status_content_and_process_differences():
    bad = dict(HTTP_OK, status=404, digest="sha256:bb")
    kinds = [d.what for d in compare(obs([HTTP_OK]), obs([bad], alive=False, code=1))]
    assert kinds.count("probe") == 2 and "process" in kinds
    failed = dict(HTTP_OK, ok=False, error="connection refused")
    (d,) = compare(obs([HTTP_OK]), obs([failed]))
    assert "slim failed (connection refused)" in d.detail


def test_job_exit_codes_compared():
    assert compare(obs(alive=False, code=0), obs(alive=False, code=0)) == []
    assert compare(obs(alive=False, code=0), obs(alive=False, code=127))[0].what == "process"


def test_missing_files_from_real_messages():
    log = ("/usr/sbin/nginx: error while loading shared libraries: libpcre2-8.so.0: cannot open shared object file: "
           "No such file or directory\n"
           '2026/12/03 10:00:00 [emerg] 1#1: open() "/etc/nginx/mime.types" failed (2: No such file or directory)\n'
           "python3: can't open file '/app/app.py': [Errno 2] No such file or directory\n")
    assert missing_files(log) == ["libpcre2-8.so.0", "/etc/nginx/mime.types", "/app/app.py"]
    d = compare(obs(), obs(log=log))
    assert {x.detail for x in d if x.what == "missing"} >= {"slim run cannot find libpcre2-8.so.0"}


def test_denied_lines_only_new_ones_count():
    log = "socket: Operation not permitted\nfine\n"
    assert denied_lines(log) == ["socket: Operation not permitted"]
    assert compare(obs(log=log), obs(log=log)) == []
    assert compare(obs(), obs(log=log))[0].what == "denied"


def test_denied_lines_differing_only_in_times_and_pids_are_the_same():
    a = "1:M 03 Dec 2026 18:41:05.545 # Server can't set maximum open files: Operation not permitted\n"
    b = "1:M 03 Dec 2026 18:41:06.299 # Server can't set maximum open files: Operation not permitted\n"
    assert compare(obs(log=a), obs(log=b)) == []
