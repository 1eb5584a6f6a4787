"""The strace parser on hand-written lines (``-f -q -X raw -y`` format)."""

from trimcage.trace.interface import Exit, Signal, Syscall
from trimcage.trace.parse_strace import (ParseStats, fd_path, parse_int, parse_lines, parse_string,
                                         parse_string_list, parse_text, split_args)


def test_simple_call_with_fd_decoration():
    [ev] = parse_text('5     openat(-100</>, "/etc/ld.so.cache", 0x80000) = 3</etc/ld.so.cache>\n')
    assert ev == Syscall(5, "openat", ("-100</>", '"/etc/ld.so.cache"', "0x80000"), 3, None, "/etc/ld.so.cache")


def test_error_return():
    [ev] = parse_text('12 access("/etc/ld.so.preload", 0x4) = -1 ENOENT (No such file or directory)')
    assert ev.ret == -1 and ev.errno == "ENOENT" and ev.args == ('"/etc/ld.so.preload"', "0x4")


def test_unfinished_resumed_pairs_interleaved():
    text = "\n".join([
        '13000 statx(-100</etc>, "/nonexist", |0x800, 0x2,  <unfinished ...>',
        "12998 wait4(-1,  <unfinished ...>",
        "13000 <... statx resumed>0x7ffd6042f130) = -1 ENOENT (No such file or directory)",
        "12998 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 2}], 0, NULL) = 13000",
    ])
    evs = parse_text(text)
    assert [e.name for e in evs] == ["statx", "wait4"]
    assert evs[0].args == ("-100</etc>", '"/nonexist"', "|0x800", "0x2", "0x7ffd6042f130")
    assert evs[0].errno == "ENOENT"
    assert evs[1].ret == 13000 and evs[1].args[1] == "[{WIFEXITED(s) && WEXITSTATUS(s) == 2}]"


def test_vfork_unfinished_without_args():
    evs = parse_text("7 vfork( <unfinished ...>\n8 execve(\"/bin/t\", [\"t\"], 0x1 /* 3 vars */) = 0\n"
                     "7 <... vfork resumed>) = 8\n")
    assert [(e.pid, e.name, e.ret) for e in evs] == [(8, "execve", 0), (7, "vfork", 8)]
    assert evs[1].args == ()


def test_exits_signals_and_kills():
    evs = parse_text("9 +++ exited with 3 +++\n10 --- SIGCHLD {si_signo=17, si_code=0x1, si_pid=9} ---\n"
                     "11 +++ killed by SIGKILL +++\n12 +++ killed by SIGSEGV (core dumped) +++\n")
    assert evs == [Exit(9, 3), Signal(10, "SIGCHLD"), Exit(11, None, "SIGKILL"), Exit(12, None, "SIGSEGV")]


def test_exit_group_question_mark_and_unfinished_at_end():
    evs = parse_text("4 exit_group(0) = ?\n5 read(3</dev/null>,  <unfinished ...>\n")
    assert evs[0] == Syscall(4, "exit_group", ("0",), None)
    assert evs[1].name == "read" and evs[1].ret is None and evs[1].args == ("3</dev/null>",)


def test_garbage_is_skipped_and_counted():
    st = ParseStats()
    evs = list(parse_lines(["strace: Process 5 attached\n", "5 openat(-100</>, \"/x\"", ""], st))
    assert evs == [] and st.skipped == 3 and st.lines == 3


def test_raw_values_and_helpers():
    assert parse_int("0x1|0x80000") == 0x80001
    assert parse_int("htons(0)") == 0
    assert parse_int("-100</tmp>") == -100
    assert parse_int("flags=0x1200000|17") == 0x1200011
    assert parse_int('"abc"') is None
    assert fd_path("3</a,b/c (deleted)>") == "/a,b/c"
    assert fd_path("0x7ffd") is None
    assert parse_string(r'"a\"b\\c\n\x41\101"') == 'a"b\\c\nAA'
    assert parse_string('"trunc"...') == "trunc"
    assert parse_string_list('["nginx", "-g", "daemon off;"]') == ["nginx", "-g", "daemon off;"]


def test_split_args_respects_strings_structs_and_decorations():
    s = '3<socket:[41511]>, {sa_family=0x2, sin_port="\\x00\\x50", sin_addr="\\x7f\\x00\\x00\\x01"}, 16'
    assert split_args(s) == ["3<socket:[41511]>",
                             '{sa_family=0x2, sin_port="\\x00\\x50", sin_addr="\\x7f\\x00\\x00\\x01"}', "16"]
    assert split_args('"a, b", 5</x, y>, [1, 2]') == ['"a, b"', "5</x, y>", "[1, 2]"]


def test_clone_with_reordered_args():
    [ev] = parse_text("20 clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f1d) = 21")
    assert ev.args[1] == "flags=0x1200000|17" and ev.ret == 21


def test_octal_return_values_parse():
    from trimcage.trace.parse_strace import parse_text

    (ev,) = parse_text("7 umask(077) = 022\n")
    assert ev.name == "umask" and ev.ret == 0o22
