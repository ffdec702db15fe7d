"""`dedupe completion bash|zsh|fish` and `dedupe completion --man DIR`: shell completion and the
manual page, generated from the parser that runs the commands.

Generated at run time from `dedupe.cli.main.build_parser()`, so what a shell offers and what the
manual says are always what this installed version accepts: an install through `pipx` or `uv
tool` (which copy no files outside their own environment) gets them with one line each (README).
`tools/make-man.py` writes the same texts into the checkout (docs/dedupe.1, tools/dedupe.*) and
checks that they are current.

The scripts need nothing beyond the shell itself (no bash-completion helpers, no Python at
completion time): each knows the commands, their options, the options that take a value (after
which the shell completes file names) and the fixed choices of positional arguments (`key
passwd`, `schedule install`). The manual page is plain roff (`man -l`, groff).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from dedupe import __version__
from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DedupeError, UsageError

SHELLS = ("bash", "zsh", "fish")


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "completion",
        parents=[common],
        help="print shell completion (bash, zsh, fish) or write the manual page",
        description="Print the completion script for a shell, made from this version's own "
        "commands and options, or write the manual page dedupe.1 into a folder. Install each "
        "once; after an upgrade, run the same lines again.",
        epilog="examples:\n"
        "  dedupe completion bash > ~/.local/share/bash-completion/completions/dedupe\n"
        "  dedupe completion zsh > ~/.zfunc/_dedupe      (with fpath+=(~/.zfunc) in ~/.zshrc)\n"
        "  dedupe completion fish > ~/.config/fish/completions/dedupe.fish\n"
        "  dedupe completion --man ~/.local/share/man/man1      then: man dedupe\n"
        "  sudo sh -c 'dedupe completion bash > /usr/share/bash-completion/completions/dedupe'",
    )
    p.add_argument(
        "shell", nargs="?", choices=SHELLS, metavar="SHELL", help="the shell: bash, zsh or fish"
    )
    p.add_argument(
        "--man",
        metavar="DIR",
        help="write the manual page DIR/dedupe.1 (DIR is made if missing)",
    )
    p.set_defaults(handler=cmd_completion)


def cmd_completion(ctx: Context) -> int:
    shell, man_dir = ctx.args.shell, ctx.args.man
    if shell is None and man_dir is None:
        raise UsageError(
            "say which shell (dedupe completion bash, zsh or fish) or where the manual page "
            "goes (dedupe completion --man DIR)"
        )
    from dedupe.cli.main import build_parser  # main imports every command, this one too

    parser = build_parser()
    if man_dir is not None:
        target = Path(man_dir) / "dedupe.1"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(man_page(parser), encoding="utf-8")
        except OSError as exc:
            raise DedupeError(
                f"could not write the manual page to {target}: {exc.strerror or exc}. Choose a "
                "folder you may write to (for yourself: ~/.local/share/man/man1)"
            ) from None
        ctx.info(f"wrote {target}")
    if shell is not None:
        ctx.out(script(shell, parser).rstrip("\n"))
    return 0


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    infos = command_infos(parser)
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](parser, infos)


# --- what the generators read from the parser -----------------------------------------------

_GLOBAL = {"--repo", "--s3-endpoint", "--json", "--quiet", "--verbose", "--help"}


def is_global(action: argparse.Action) -> bool:
    """An option every command takes (from the common parent parser)."""
    return bool(set(action.option_strings) & _GLOBAL)


def one_line(text: str) -> str:
    """Help text on one line (argparse's `%(default)s` left as it is written)."""
    return " ".join(text.replace("%%", "%").split())


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


@dataclass
class CommandInfo:
    """One command as the completion scripts see it."""

    names: list[str]  # the command and its aliases
    summary: str
    parser: argparse.ArgumentParser
    actions: list[argparse.Action]
    options: list[str]  # every option string
    option_help: list[tuple[str, str]]  # (option string, its help)
    valued: list[str]  # options that take a value
    choices: list[str]  # subcommands and fixed choices of positional arguments

    @classmethod
    def of(
        cls,
        name: str,
        parser: argparse.ArgumentParser,
        aliases: list[str] | None = None,
        summary: str = "",
    ) -> CommandInfo:
        actions = [
            a
            for a in parser._actions
            if a.help != argparse.SUPPRESS or a.option_strings  # hidden globals still complete
        ]
        options: list[str] = []
        option_help: list[tuple[str, str]] = []
        valued: list[str] = []
        choices: list[str] = []
        for action in actions:
            if isinstance(action, argparse._SubParsersAction):
                choices += list(action.choices)
                continue
            options += action.option_strings
            help_text = "" if action.help == argparse.SUPPRESS else (action.help or "")
            option_help += [(o, help_text) for o in action.option_strings]
            if action.option_strings and action.nargs != 0:
                valued += action.option_strings
            if not action.option_strings and action.choices:
                choices += [str(c) for c in action.choices]
        real = [a for a in actions if not isinstance(a, argparse._SubParsersAction)]
        return cls(
            [name, *(aliases or [])], summary, parser, real, options, option_help, valued, choices
        )


def command_infos(parser: argparse.ArgumentParser) -> list[CommandInfo]:
    """Every command, in the order `dedupe --help` lists them."""
    from dedupe.cli.main import COMMAND_GROUPS

    sub = _subparsers(parser)
    assert sub is not None
    summaries: dict[str, tuple[str, list[str]]] = sub.summaries  # type: ignore[attr-defined]
    order = [n for _t, names in COMMAND_GROUPS for n in names if n in summaries]
    order += [n for n in summaries if n not in order]
    return [
        CommandInfo.of(name, sub.choices[name], summaries[name][1], summaries[name][0])
        for name in order
    ]


# --- the manual page -------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text safe in roff: backslashes, leading dots and quotes, hyphens in options."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w-])-", r"\\-", text)
    lines = [("\\&" + line if line.startswith((".", "'")) else line) for line in text.split("\n")]
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    """Help text (wrapped paragraphs, indented verbatim lines) as roff."""
    out: list[str] = []
    verbatim = False
    for line in text.strip("\n").split("\n"):
        if not line.strip():
            if verbatim:
                out.append(".fi")
                verbatim = False
            out.append(".PP")
        elif line.startswith(" "):
            if not verbatim:
                out.append(".nf")
                verbatim = True
            out.append(_roff(line))
        else:
            if verbatim:
                out.append(".fi")
                verbatim = False
            out.append(_roff(line))
    if verbatim:
        out.append(".fi")
    return "\n".join(out)


def _options(actions: list[argparse.Action]) -> list[str]:
    out: list[str] = []
    for action in actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else "")
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        if action.option_strings:
            names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
            head = names + (f" \\fI{_roff(str(metavar))}\\fR" if action.nargs != 0 else "")
        else:
            head = f"\\fI{_roff(str(metavar))}\\fR"
        out += [".TP", head, _roff(action.help or "")]
    return out


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line as argparse writes it for an 80-column terminal, whatever this one is."""
    formatter = argparse.HelpFormatter(parser.prog, width=78)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def man_page(parser: argparse.ArgumentParser) -> str:
    """dedupe.1: every command with its usage, description, options and examples."""
    from dedupe.cli.main import TOP_EPILOG

    top_description = (parser.description or "").split("\n\n")[0]
    lines = [
        f'.TH DEDUPE 1 "" "dedupe {__version__}" "User Commands"',
        '.\\" Generated from the parser (dedupe completion --man DIR); do not edit by hand.',
        ".SH NAME",
        "dedupe \\- encrypted, deduplicating backups",
        ".SH SYNOPSIS",
        "\\fBdedupe\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        _paragraphs(top_description),
        ".SH GLOBAL OPTIONS",
        "Accepted before or after the command name.",
        *_options(parser._actions),
        ".SH COMMANDS",
    ]
    for info in command_infos(parser):
        name, command = info.names[0], info.parser
        lines += [f".SS {_roff(name)}", ".nf", _roff(_usage(command)), ".fi"]
        lines += [_paragraphs(command.description or "")]
        own = [a for a in command._actions if not is_global(a)]
        if own:
            lines += [".RS", *_options(own), ".RE"]
        nested = _subparsers(command)
        if nested is not None:
            for child_name, child in nested.choices.items():
                lines += [".TP", f"\\fB{_roff(name)} {_roff(child_name)}\\fR"]
                lines += [_roff((child.description or "").strip())]
        if command.epilog:
            lines += [".PP", _paragraphs(command.epilog)]
    lines += [".SH ENVIRONMENT AND FILES", _paragraphs(TOP_EPILOG.split("Exit codes:")[0])]
    lines += [".SH EXIT STATUS", _paragraphs("Exit codes:" + TOP_EPILOG.split("Exit codes:")[1])]
    lines += [".SH SEE ALSO", "restic(1), borg(1), ssh_config(5)", ""]
    return "\n".join(lines)


# --- bash ------------------------------------------------------------------------------------


def bash_script(parser: argparse.ArgumentParser, infos: list[CommandInfo]) -> str:
    top = CommandInfo.of("", parser)
    valued = sorted(set(top.valued).union(*(set(i.valued) for i in infos)))
    cases = [
        f'        {"|".join(i.names)}) opts="{" ".join(i.options)}"; '
        f'words="{" ".join(i.choices)}" ;;'
        for i in infos
    ]
    commands = [name for i in infos for name in i.names]
    return "\n".join(
        [
            "# bash completion for dedupe; generated from the parser (dedupe completion bash).",
            "# Install: dedupe completion bash > ~/.local/share/bash-completion/completions/dedupe",
            "# (or /usr/share/bash-completion/completions/dedupe), or source it.",
            "_dedupe() {",
            '    local cur="${COMP_WORDS[COMP_CWORD]}"',
            '    local prev="${COMP_WORDS[COMP_CWORD-1]}"',
            f'    local valued=" {" ".join(valued)} "',
            '    local cmd="" i word',
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        word="${COMP_WORDS[i]}"',
            '        if [[ $valued == *" ${COMP_WORDS[i-1]} "* && $i -gt 1 ]]; then continue; fi',
            '        if [[ $word != -* ]]; then cmd="$word"; break; fi',
            "    done",
            '    if [[ $valued == *" $prev "* ]]; then',
            "        COMPREPLY=()",
            "        return 0  # a value: let bash complete file names (complete -o default)",
            "    fi",
            '    local opts="" words=""',
            '    case "$cmd" in',
            f'        "") opts="{" ".join(top.options)}"; words="{" ".join(commands)}" ;;',
            *cases,
            "    esac",
            "    if [[ $cur == -* ]]; then",
            '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
            "    else",
            '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "    fi",
            "    return 0",
            "}",
            "complete -o default -F _dedupe dedupe",
            "",
        ]
    )


# --- zsh -------------------------------------------------------------------------------------


def _zsh_word(word: str, description: str) -> str:
    """A `word:description` item for `_describe`, quoted for zsh."""
    text = word.replace(":", "\\:") + ":" + one_line(description).replace(":", "\\:")
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_array(name: str, items: list[str]) -> str:
    return f"{name}=(" + " ".join(items) + ")"


def zsh_script(parser: argparse.ArgumentParser, infos: list[CommandInfo]) -> str:
    top = CommandInfo.of("", parser)
    valued = sorted(set(top.valued).union(*(set(i.valued) for i in infos)))
    commands = [_zsh_word(n, i.summary) for i in infos for n in i.names]
    cases = []
    for i in infos:
        opts = [_zsh_word(o, h) for o, h in i.option_help]
        words = [_zsh_word(c, "") for c in i.choices]
        cases.append(
            f"        {'|'.join(i.names)}) {_zsh_array('opts', opts)}; "
            f"{_zsh_array('choices', words)} ;;"
        )
    return "\n".join(
        [
            "#compdef dedupe",
            "# zsh completion for dedupe; generated from the parser (dedupe completion zsh).",
            "# Install: dedupe completion zsh > ~/.zfunc/_dedupe with fpath+=(~/.zfunc) before",
            "# compinit in ~/.zshrc (or into a folder of $fpath such as",
            "# /usr/local/share/zsh/site-functions), or source it after compinit.",
            "_dedupe() {",
            f"    local -a valued; valued=({' '.join(valued)})",
            "    local cmd='' i",
            "    for ((i = 2; i < CURRENT; i++)); do",
            "        if (( i > 2 && ${valued[(Ie)${words[i-1]}]} )); then continue; fi",
            "        if [[ ${words[i]} != -* ]]; then cmd=${words[i]}; break; fi",
            "    done",
            "    if (( CURRENT > 2 && ${valued[(Ie)${words[CURRENT-1]}]} )); then",
            "        _files; return",  # a value: a file name is the best guess
            "    fi",
            "    local -a opts choices commands",
            '    case "$cmd" in',
            f"        '') {_zsh_array('opts', [_zsh_word(o, h) for o, h in top.option_help])}; "
            f"{_zsh_array('commands', commands)} ;;",
            *cases,
            "    esac",
            "    if [[ ${words[CURRENT]} == -* ]]; then",
            "        _describe -t options option opts",
            "    elif [[ -z $cmd ]]; then",
            "        _describe -t commands command commands",
            "    elif (( ${#choices} )); then",
            "        _describe -t choices choice choices",
            "    else",
            "        _files",
            "    fi",
            "}",
            'if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then',
            '    _dedupe "$@"',
            "else",
            "    compdef _dedupe dedupe",
            "fi",
            "",
        ]
    )


# --- fish ------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(option: str) -> str:
    if option.startswith("--"):
        return f"-l {option[2:]}"
    if len(option) == 2:
        return f"-s {option[1]}"
    return f"-o {option[1:]}"


def _fish_options(condition: str, info: CommandInfo) -> list[str]:
    lines = []
    for action in info.actions:
        if not action.option_strings:
            continue
        flags = " ".join(_fish_option(o) for o in action.option_strings)
        takes = " -r" if action.nargs != 0 else ""
        described = f" -d {_fish_quote(one_line(action.help or ''))}" if action.help else ""
        lines.append(f"complete -c dedupe -n {_fish_quote(condition)} {flags}{takes}{described}")
    return lines


def fish_script(parser: argparse.ArgumentParser, infos: list[CommandInfo]) -> str:
    top = CommandInfo.of("", parser)
    valued = sorted(set(top.valued).union(*(set(i.valued) for i in infos)))
    lines = [
        "# fish completion for dedupe; generated from the parser (dedupe completion fish).",
        "# Install: dedupe completion fish > ~/.config/fish/completions/dedupe.fish",
        "function __dedupe_command --description 'the dedupe command being completed'",
        "    set -l words (commandline -opc)",
        "    set -e words[1]",
        f"    set -l valued {' '.join(valued)}",
        "    set -l skip 0",
        "    for word in $words",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        "        if contains -- $word $valued",
        "            set skip 1",
        "        else if not string match -q -- '-*' $word",
        "            echo $word",
        "            return 0",
        "        end",
        "    end",
        "    return 1",
        "end",
        "function __dedupe_using --description 'true when completing the command $argv[1]'",
        "    set -l command (__dedupe_command)",
        "    and contains -- $command $argv",
        "end",
        "complete -c dedupe -e",
    ]
    lines += _fish_options("not __dedupe_command", top)
    for info in infos:
        lines.append(
            f"complete -c dedupe -n 'not __dedupe_command' -f -a {info.names[0]} "
            f"-d {_fish_quote(one_line(info.summary))}"
        )
    for info in infos:
        condition = "__dedupe_using " + " ".join(info.names)
        lines += _fish_options(condition, info)
        if info.choices:
            seen = " ".join(info.choices)
            lines.append(
                f"complete -c dedupe -n {_fish_quote(f'{condition}; and not __fish_seen_subcommand_from {seen}')} "  # noqa: E501
                f"-f -a {_fish_quote(seen)}"
            )
    lines.append("")
    return "\n".join(lines)
