"""The training scripts' command line, made from the flag table (common/flags.py), and the one-line
error exit (the run folder is common/training/lifecycle.py's)."""
import argparse
import copy
import sys
import traceback

from ..data import DataError
from ..flags import GROUP_TITLES, GROUPS, RECIPES, flag_problems, flags_of, recipe_names, recipes_text
from ..io import release_locks
from .loop import TrainingError


class UsageError(Exception):
    """A flag combination that cannot work; printed as one line."""


def recipe_arg(text):
    """--recipe NAME[,NAME...]: names of the recipe table."""
    for name in recipe_names(text):
        if name not in RECIPES:
            raise argparse.ArgumentTypeError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)}; "
                                             "--list-recipes shows their flags)")
    return text


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with "(default: X)" where a flag has a default worth saying (not None, False or [])."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def training_parser(script, description):
    """The parser of train_<script>.py: every flag of the table that the script takes, in --help's sections."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    groups = {g: p.add_argument_group(GROUP_TITLES[g]) for g in GROUPS}
    for f in flags_of(script):
        kwargs = {"help": f.help, "default": False if f.action == "store_true" else copy.copy(f.default_for(script))}
        for key in ("type", "choices", "nargs", "metavar", "action"):
            if getattr(f, key) is not None:
                kwargs[key] = getattr(f, key)
        if f.dest == "recipe":
            kwargs["type"] = recipe_arg
        groups[f.group].add_argument(f.name, **kwargs)
    return p


def parse_training_args(parser, script, argv=None):
    """The flags of a training command, its recipes applied (--list-recipes: print them and exit)."""
    args = parser.parse_args(argv)
    if args.list_recipes:
        print(recipes_text(script))
        raise SystemExit(0)
    del args.list_recipes  # a question, not a setting of the run: config.json does not record it
    return apply_recipes(args, parser, script, argv)


def apply_recipes(args, parser, script, argv=None):
    """Fill in each --recipe's flags, in order, except those given on the command line; the resolved
    values and the recipe names are what config.json records. A resumed run keeps its saved flags:
    lifecycle.py puts them back afterwards."""
    names = recipe_names(args.recipe)
    given = explicit_flags(parser, argv)
    for name in names:
        if script not in RECIPES[name].scripts:
            raise UsageError(f"--recipe {name} is not for train_{script}.py (it sets "
                             f"{', '.join('--' + k.replace('_', '-') for k in RECIPES[name].flags)})")
        for key, value in RECIPES[name].flags.items():
            if key not in given:
                setattr(args, key, copy.copy(value))
    args.recipe = names or ["exam"]
    return args


def check_flags(args, script):
    """Refuse, in one line, a combination of flags that cannot work or would be ignored (after the
    recipes, and a resumed run's saved flags, are in place)."""
    problems = flag_problems(args, script)
    if problems:
        flag = problems[0].split()[0]  # each problem begins with the flag it is about
        named = [n for n in (args.recipe if isinstance(args.recipe, list) else [])
                 if any("--" + key.replace("_", "-") == flag for key in RECIPES[n].flags)]
        raise UsageError(problems[0] + (f" (--recipe {named[-1]} sets {flag})" if named else ""))


def explicit_flags(parser, argv=None):
    """Names of the flags given on the command line (not left at their defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            probe._add_action(copy.copy(action)).default = argparse.SUPPRESS
    return set(vars(probe.parse_known_args(argv)[0]))


def run_main(main):
    """Call main(); turn user-facing errors into one line on stderr and exit code 2 (1 for training)."""
    try:
        code = main()
    except SystemExit as e:  # e.g. "nothing to do" on a finished run
        code = e.code
    except (DataError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        release_locks()  # a run's lock ends with its command, also inside a test process
    sys.exit(code or 0)
