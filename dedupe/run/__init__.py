"""The nightly job of a profile (`dedupe run`) and what it knows afterwards (`dedupe status`).

`run` is an orchestration: each step (a source, forget, gc, a copy, a check slice) is the
ordinary `dedupe` command run as a child process, so its exit code, messages and guarantees are
exactly the standalone command's, a crash in one step cannot take the others down, and every
step's memory is returned when it ends (borgmatic runs Borg the same way). What the job decides
(which drives are attached, which warnings apply, the exit code) is pure and lives in `plan` and
`verdict`; the state folder (run records, remembered drive ids, the run log) is `state`'s.
"""
