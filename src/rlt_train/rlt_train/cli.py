"""Command lines from config dataclasses: every field becomes an option, its docstring the help."""

import argparse
import ast
import dataclasses
import inspect
import textwrap


def field_docs(cls) -> dict[str, str]:
    """The string literal under each annotated field of a dataclass (its attribute docstring)."""
    docs = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and \
                    isinstance(nxt.value.value, str):
                docs[node.target.id] = nxt.value.value.strip()
    return docs


def parse_config(cls, argv=None, prog=None):
    """Build `cls` from the command line; `--help` lists every field with its default."""
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or '').strip(),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        option = '--' + f.name.replace('_', '-')
        kwargs = {'default': default, 'help': docs.get(f.name, ' ').replace('%', '%%')}  # argparse formats help
        if isinstance(default, bool):
            parser.add_argument(option, action=argparse.BooleanOptionalAction, **kwargs)
        elif isinstance(default, tuple):
            element = type(default[0]) if default else str
            parser.add_argument(option, nargs='+', type=element, **kwargs)
        else:
            parser.add_argument(option, type=type(default) if default is not None else str, **kwargs)
    args = vars(parser.parse_args(argv))
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        return cls(**args)
    except ValueError as err:
        parser.error(str(err))
