"""Pebble template syntax to Jinja2 source, with Pebble's grammar and precedence.

Jinja and Pebble look alike but differ: Pebble has ``??``/``???``, ``a ? b : c``, ``equals``,
``contains``, ``..``, ``is not``, ``"#{interpolation}"``, ``elseif``, ``verbatim``; its filter
``|`` binds looser than ``~``/``..``/``??`` and its ``not`` tighter than comparisons; its strings
only unescape ``\\'`` and ``\\\\``. So we do not rewrite text with regular expressions: this
module tokenizes the template as Pebble's lexer does (strings and bracket nesting are respected,
so ``'a ? b : c'`` or ``'}}'`` inside a string are just text), parses expressions with Pebble's
operator precedence, and emits equivalent Jinja source that is fully parenthesized and calls
helpers for Pebble semantics:

- ``__k_*(…)`` helpers (``__k_bool``, ``__k_eq``, ``__k_concat``…) for operators whose meaning
  differs from Python's; ``+ - * / %`` stay Jinja operators, intercepted by the sandbox.
- ``__lazy_*(…)`` calls for constructs that must not evaluate (or must catch undefined errors
  in) some operands: ``??``, ``???``, ``is defined``, ``| default``. The compiler turns them into
  calls with lambda thunks (see ``compiler.py``).
- ``__f_<name>(…)`` for Pebble/Kestra functions, so a variable can never shadow a function.

Text between tags is emitted as string literals, Pebble's whitespace control (``{{-``, ``-}}``)
is applied here, and names starting with ``__`` are refused in templates, so templates cannot
reach the helpers directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from controlplane.expressions import limits
from controlplane.expressions.errors import LimitError, PebbleSyntaxError

# --- tokens --------------------------------------------------------------------------------------

TEXT, PRINT_START, PRINT_END, EXEC_START, EXEC_END = "TEXT", "PRINT_START", "PRINT_END", "EXEC_START", "EXEC_END"
OP, NAME, NUMBER, LONG, STRING, PUNCT, ISTRING = "OP", "NAME", "NUMBER", "LONG", "STRING", "PUNCT", "ISTRING"


@dataclass
class Token:
    """A lexer token. ``value`` is text, or for ``ISTRING`` a list of ``str`` / token lists."""

    type: str
    value: Any
    pos: int


_START_RE = re.compile(r"\{\{|\{%|\{#")
_WORD_OPERATORS = ["is not", "not in", "equals", "contains", "not", "and", "or", "is", "in"]
_SYMBOL_OPERATORS = ["???", "??", "==", "!=", ">=", "<=", "..", "+", "-", "*", "/", "%", "|", "~", ">", "<"]
_OPERATOR_RE = re.compile(
    "|".join(
        [re.escape(op) + r"(?![a-zA-Z0-9_])" for op in _WORD_OPERATORS]
        + [re.escape(op) for op in sorted(_SYMBOL_OPERATORS, key=len, reverse=True)]
    )
)
_NAME_RE = re.compile(r"[^\W\d]\w*")
_LONG_RE = re.compile(r"[0-9]+L")
_NUMBER_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_SINGLE_RE = re.compile(r"'([^'\\]*(?:\\.[^'\\]*)*)'", re.DOTALL)
_DOUBLE_PLAIN_RE = re.compile(r'"([^#"\\]*(?:\\.[^#"\\]*)*)"', re.DOTALL)
_DOUBLE_PART_RE = re.compile(r'[^#"\\]*(?:(?:\\.|#(?!\{))[^#"\\]*)*', re.DOTALL)
_VERBATIM_START_RE = re.compile(r"\s*verbatim\s*(-)?%\}")
_VERBATIM_END_RE = re.compile(r"\{%(-)?\s*endverbatim\s*(-)?%\}")
_PUNCTUATION = "()[]{}?:.,|="
_WHITESPACE = " \t\n\x0b\f\r"
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _unescape(text: str, quote: str) -> str:
    return text.replace("\\" + quote, quote).replace("\\\\", "\\")


class _Lexer:
    """Pebble's lexer (``LexerImpl``): text, ``{{ }}``, ``{% %}``, ``{# #}`` and expression tokens."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.tokens: list[Token] = []
        self.trim_next = False

    def error(self, message: str, pos: int | None = None) -> PebbleSyntaxError:
        return PebbleSyntaxError(message, self.pos if pos is None else pos, self.source)

    def _push_text(self, text: str, pos: int) -> None:
        if self.trim_next:
            text = text.lstrip(_WHITESPACE)
            self.trim_next = False
        if text:
            self.tokens.append(Token(TEXT, text, pos))

    def _trim_previous_text(self) -> None:
        if self.tokens and self.tokens[-1].type == TEXT:
            self.tokens[-1].value = self.tokens[-1].value.rstrip(_WHITESPACE)
            if not self.tokens[-1].value:
                self.tokens.pop()

    def tokenize(self) -> list[Token]:
        source = self.source
        while self.pos < len(source):
            match = _START_RE.search(source, self.pos)
            if match is None:
                self._push_text(source[self.pos :], self.pos)
                self.pos = len(source)
                break
            self._push_text(source[self.pos : match.start()], self.pos)
            start = match.start()
            self.pos = match.end()
            if source.startswith("-", self.pos):
                self._trim_previous_text()
                self.pos += 1
            delimiter = match.group()
            if delimiter == "{#":
                end = source.find("#}", self.pos)
                if end < 0:
                    raise self.error("Unclosed comment.", start)
                self.trim_next = source[end - 1 : end] == "-" and end - 1 >= self.pos
                self.pos = end + 2
                continue
            if delimiter == "{%":
                verbatim = _VERBATIM_START_RE.match(source, self.pos)
                if verbatim:
                    self._verbatim(verbatim, start)
                    continue
                self.tokens.append(Token(EXEC_START, "{%", start))
                self._expression(close="%}", end_type=EXEC_END, opener=start)
            else:
                self.tokens.append(Token(PRINT_START, "{{", start))
                self._expression(close="}}", end_type=PRINT_END, opener=start)
        return self.tokens

    def _verbatim(self, start_match: re.Match[str], start: int) -> None:
        self.pos = start_match.end()
        end = _VERBATIM_END_RE.search(self.source, self.pos)
        if end is None:
            raise self.error("Unclosed verbatim tag.", start)
        text = self.source[self.pos : end.start()]
        if start_match.group(1):
            text = text.lstrip(_WHITESPACE)
        if end.group(1):
            text = text.rstrip(_WHITESPACE)
        self.trim_next = False
        if text:
            self.tokens.append(Token(TEXT, text, self.pos))
        self.trim_next = bool(end.group(2))
        self.pos = end.end()

    def _skip_whitespace(self) -> None:
        while self.pos < len(self.source) and self.source[self.pos] in _WHITESPACE:
            self.pos += 1

    def _expression(self, close: str, end_type: str, opener: int) -> None:
        brackets: list[tuple[str, int]] = []
        source = self.source
        while True:
            self._skip_whitespace()
            if self.pos >= len(source):
                if brackets:
                    raise self.error(f'Unclosed "{brackets[-1][0]}"', brackets[-1][1])
                raise self.error(f'Unclosed "{source[opener:opener + 2]}"', opener)
            if not brackets and source.startswith("-" + close, self.pos):
                self.tokens.append(Token(end_type, close, self.pos))
                self.pos += 1 + len(close)
                self.trim_next = True
                return
            if not brackets and source.startswith(close, self.pos):
                self.tokens.append(Token(end_type, close, self.pos))
                self.pos += len(close)
                return
            self.tokens.append(self._expression_token(brackets))

    def _expression_token(self, brackets: list[tuple[str, int]]) -> Token:
        source, pos = self.source, self.pos
        match = _OPERATOR_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(OP, match.group(), pos)
        match = _NAME_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(NAME, match.group(), pos)
        match = _LONG_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(LONG, match.group()[:-1], pos)
        match = _NUMBER_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(NUMBER, match.group(), pos)
        char = source[pos]
        if char in _PUNCTUATION:
            if char in _PAIRS:
                brackets.append((char, pos))
            elif char in ")]}":
                if not brackets:
                    raise self.error(f'Unexpected "{char}"')
                opening, _ = brackets.pop()
                if _PAIRS[opening] != char:
                    raise self.error(f'Unclosed "{_PAIRS[opening]}"')
            self.pos += 1
            return Token(PUNCT, char, pos)
        match = _SINGLE_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(STRING, _unescape(match.group(1), "'"), pos)
        match = _DOUBLE_PLAIN_RE.match(source, pos)
        if match:
            self.pos = match.end()
            return Token(STRING, _unescape(match.group(1), '"'), pos)
        if char == '"':
            return self._interpolated_string()
        raise self.error(f"Unexpected character [{char}]")

    def _interpolated_string(self) -> Token:
        start = self.pos
        self.pos += 1
        parts: list[Any] = []
        source = self.source
        while True:
            if self.pos >= len(source):
                raise self.error('Unclosed """', start)
            if source.startswith("#{", self.pos):
                self.pos += 2
                inner: list[Token] = []
                brackets: list[tuple[str, int]] = []
                while True:
                    self._skip_whitespace()
                    if self.pos >= len(source):
                        raise self.error('Unclosed "#{"', start)
                    if not brackets and source[self.pos] == "}":
                        self.pos += 1
                        break
                    inner.append(self._expression_token(brackets))
                parts.append(inner)
                continue
            match = _DOUBLE_PART_RE.match(source, self.pos)
            if match and match.end() > self.pos:
                parts.append(_unescape(match.group(), '"'))
                self.pos = match.end()
                continue
            if source[self.pos] == '"':
                self.pos += 1
                return Token(ISTRING, parts, start)
            raise self.error('Unclosed """', start)


def tokenize(source: str) -> list[Token]:
    """Tokenize a Pebble template.

    Raises:
        PebbleSyntaxError: unclosed delimiter, string or bracket; unexpected character.
        LimitError: more than ``limits.MAX_TEMPLATE_TOKENS`` tokens (compiling is ~0.1 ms per
            token and cannot be interrupted, so the size is bounded before it starts).
    """
    tokens = _Lexer(source).tokenize()
    if len(tokens) > limits.MAX_TEMPLATE_TOKENS:
        raise LimitError(
            f"template has {len(tokens)} tokens, more than the limit of {limits.MAX_TEMPLATE_TOKENS} "
            "(split it, or move the logic into a task)"
        )
    return tokens


# --- expression AST ------------------------------------------------------------------------------


@dataclass
class Literal:
    value: Any


@dataclass
class ListLit:
    items: list[Any]


@dataclass
class MapLit:
    pairs: list[tuple[Any, Any]]


@dataclass
class Name:
    name: str


@dataclass
class GetAttr:
    obj: Any
    name: str


@dataclass
class GetItem:
    obj: Any
    key: Any


@dataclass
class Args:
    positional: list[Any] = field(default_factory=list)
    named: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class Call:
    name: str
    args: Args


@dataclass
class MethodCall:
    obj: Any
    name: str
    args: Args


@dataclass
class Unary:
    op: str
    operand: Any


@dataclass
class Binary:
    op: str
    left: Any
    right: Any


@dataclass
class Test:
    operand: Any
    name: str
    args: Args
    negated: bool


@dataclass
class Filter:
    operand: Any
    name: str
    args: Args


@dataclass
class Ternary:
    condition: Any
    then: Any
    otherwise: Any


@dataclass
class Interpolation:
    parts: list[Any]


# template parts


@dataclass
class Text:
    text: str


@dataclass
class Print:
    expr: Any


@dataclass
class Tag:
    name: str
    pos: int
    target: str | None = None
    expr: Any = None
    params: list[tuple[str, Any]] = field(default_factory=list)
    filters: list[tuple[str, Args]] = field(default_factory=list)


PRECEDENCE = {
    "or": 10,
    "and": 15,
    "is": 20,
    "is not": 20,
    "contains": 20,
    "==": 30,
    "equals": 30,
    "!=": 30,
    ">": 30,
    "<": 30,
    ">=": 30,
    "<=": 30,
    "in": 30,
    "not in": 30,
    "+": 40,
    "-": 40,
    "*": 60,
    "/": 60,
    "%": 60,
    "|": 100,
    "~": 110,
    "..": 120,
    "??": 120,
    "???": 120,
}
UNARY_PRECEDENCE = 500
_LITERAL_NAMES = {"true": True, "TRUE": True, "false": False, "FALSE": False}
_NULL_NAMES = {"null", "NULL", "none", "NONE"}
_BLOCK_TAGS = {"if", "for", "macro", "filter", "block"}
_IGNORED_TAGS = {"autoescape", "endautoescape", "flush", "parallel", "endparallel", "cache", "endcache"}
_UNSUPPORTED_TAGS = {"include", "extends", "import", "from", "embed"}


class _Parser:
    """Pebble's expression parser (``ExpressionParser``) and the tags we support."""

    def __init__(self, tokens: list[Token], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.index = 0
        self.depth = 0

    # cursor helpers
    def peek(self, offset: int = 0) -> Token | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise PebbleSyntaxError("Unexpected end of template", len(self.source), self.source)
        self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> PebbleSyntaxError:
        token = token or self.peek()
        return PebbleSyntaxError(message, token.pos if token else len(self.source), self.source)

    def at(self, type_: str, value: Any = None) -> bool:
        token = self.peek()
        return token is not None and token.type == type_ and (value is None or token.value == value)

    def expect(self, type_: str, value: Any = None) -> Token:
        token = self.peek()
        if token is None or token.type != type_ or (value is not None and token.value != value):
            found = "end of template" if token is None else repr(token.value)
            wanted = repr(value) if value is not None else type_.lower()
            raise self.error(f"Unexpected token {found}, expected {wanted}", token)
        self.index += 1
        return token

    # expressions
    def parse_expression(self, min_precedence: int = 0) -> Any:
        self.depth += 1
        if self.depth > limits.MAX_NESTING:
            raise LimitError(f"expression is nested more than {limits.MAX_NESTING} levels deep")
        try:
            return self._parse_expression(min_precedence)
        finally:
            self.depth -= 1

    def _parse_expression(self, min_precedence: int) -> Any:
        token = self.peek()
        if token is None or token.type in (PRINT_END, EXEC_END):
            raise self.error("Unexpected end of expression", token)
        if token.type == OP and token.value in ("not", "-", "+"):
            self.next()
            expr: Any = Unary(token.value, self.parse_expression(UNARY_PRECEDENCE))
        elif token.type == PUNCT and token.value == "(":
            self.next()
            expr = self.parse_expression()
            self.expect(PUNCT, ")")
            expr = self.parse_postfix(expr)
        else:
            expr = self.parse_primary()
        while True:
            token = self.peek()
            if token is None or token.type != OP or token.value not in PRECEDENCE:
                break
            precedence = PRECEDENCE[token.value]
            if precedence < min_precedence:
                break
            self.next()
            if token.value in ("is", "is not"):
                name = self.expect(NAME).value
                args = self.parse_args() if self.at(PUNCT, "(") else Args()
                expr = Test(expr, name, args, negated=token.value == "is not")
            elif token.value == "|":
                name = self.expect(NAME).value
                args = self.parse_args() if self.at(PUNCT, "(") else Args()
                expr = Filter(expr, name, args)
            else:
                expr = Binary(token.value, expr, self.parse_expression(precedence + 1))
        if min_precedence == 0 and self.at(PUNCT, "?"):
            self.next()
            then = self.parse_expression()
            self.expect(PUNCT, ":")
            otherwise = self.parse_expression()
            expr = Ternary(expr, then, otherwise)
        return expr

    def parse_primary(self) -> Any:
        token = self.next()
        if token.type == NAME:
            if token.value in _LITERAL_NAMES:
                expr: Any = Literal(_LITERAL_NAMES[token.value])
            elif token.value in _NULL_NAMES:
                expr = Literal(None)
            elif self.at(PUNCT, "("):
                expr = Call(token.value, self.parse_args())
            else:
                expr = Name(token.value)
        elif token.type == NUMBER:
            expr = Literal(float(token.value) if "." in token.value else self._long(token))
        elif token.type == LONG:
            expr = Literal(self._long(token))
        elif token.type == STRING:
            expr = Literal(token.value)
        elif token.type == ISTRING:
            expr = self._interpolation(token)
        elif token.type == PUNCT and token.value == "[":
            items = []
            while not self.at(PUNCT, "]"):
                if items:
                    self.expect(PUNCT, ",")
                items.append(self.parse_expression())
            self.next()
            expr = ListLit(items)
        elif token.type == PUNCT and token.value == "{":
            pairs = []
            while not self.at(PUNCT, "}"):
                if pairs:
                    self.expect(PUNCT, ",")
                key = self.parse_expression()
                self.expect(PUNCT, ":")
                pairs.append((key, self.parse_expression()))
            self.next()
            expr = MapLit(pairs)
        else:
            raise self.error(f"Unexpected token {token.value!r}", token)
        return self.parse_postfix(expr)

    def _long(self, token: Token) -> int:
        value = int(token.value)
        if value > 2**63 - 1:
            raise self.error(f"Number {token.value} is too large (Pebble numbers are Java longs)", token)
        return value

    def _interpolation(self, token: Token) -> Interpolation:
        parts: list[Any] = []
        for part in token.value:
            if isinstance(part, str):
                parts.append(Literal(part))
                continue
            sub = _Parser([*part, Token(PRINT_END, "}", token.pos)], self.source)
            sub.depth = self.depth
            parts.append(sub.parse_expression())
            if not sub.at(PRINT_END):
                raise sub.error("Unexpected token in string interpolation")
        return Interpolation(parts)

    def parse_postfix(self, expr: Any) -> Any:
        while True:
            if self.at(PUNCT, "."):
                self.next()
                token = self.next()
                if token.type == NUMBER and token.value.isdigit():
                    expr = GetItem(expr, Literal(int(token.value)))
                    continue
                if token.type not in (NAME, OP) or not _NAME_RE.fullmatch(str(token.value)):
                    raise self.error(f"Unexpected token {token.value!r} after '.'", token)
                if self.at(PUNCT, "("):
                    expr = MethodCall(expr, token.value, self.parse_args())
                else:
                    expr = GetAttr(expr, token.value)
            elif self.at(PUNCT, "["):
                self.next()
                key = self.parse_expression()
                self.expect(PUNCT, "]")
                expr = GetItem(expr, key)
            else:
                return expr

    def parse_args(self) -> Args:
        self.expect(PUNCT, "(")
        args = Args()
        while not self.at(PUNCT, ")"):
            if args.positional or args.named:
                self.expect(PUNCT, ",")
            if self.at(NAME) and (nxt := self.peek(1)) is not None and nxt.type == PUNCT and nxt.value == "=":
                name = self.next().value
                self.next()
                args.named.append((name, self.parse_expression()))
            else:
                if args.named:
                    raise self.error("Positional argument after a named argument")
                args.positional.append(self.parse_expression())
        self.next()
        return args

    # template
    def parse_template(self) -> list[Any]:
        parts: list[Any] = []
        while (token := self.peek()) is not None:
            if token.type == TEXT:
                self.next()
                parts.append(Text(token.value))
            elif token.type == PRINT_START:
                self.next()
                expr = self.parse_expression()
                self.expect(PRINT_END)
                parts.append(Print(expr))
            elif token.type == EXEC_START:
                self.next()
                tag = self.parse_tag()
                self.expect(EXEC_END)
                if tag is not None:
                    parts.append(tag)
            else:
                raise self.error(f"Unexpected token {token.value!r}", token)
        return parts

    def parse_tag(self) -> Tag | None:
        token = self.next()
        if token.type not in (NAME, OP):
            raise self.error(f"Unexpected token {token.value!r}, expected a tag name", token)
        name = token.value
        if name in _UNSUPPORTED_TAGS:
            raise self.error(f"The '{name}' tag is not supported (flows have no template files)", token)
        if name in _IGNORED_TAGS:
            while not self.at(EXEC_END):
                self.next()
            return None
        tag = Tag(name, token.pos)
        if name in ("if", "elseif"):
            tag.expr = self.parse_expression()
        elif name == "for":
            tag.target = self.expect(NAME).value
            if not (self.at(OP, "in") or self.at(NAME, "in")):
                raise self.error("Expected 'in' in the for tag")
            self.next()
            tag.expr = self.parse_expression()
        elif name == "set":
            tag.target = self.expect(NAME).value
            self.expect(PUNCT, "=")
            tag.expr = self.parse_expression()
        elif name == "macro":
            tag.target = self.expect(NAME).value
            self.expect(PUNCT, "(")
            while not self.at(PUNCT, ")"):
                if tag.params:
                    self.expect(PUNCT, ",")
                param = self.expect(NAME).value
                default = None
                if self.at(PUNCT, "="):
                    self.next()
                    default = self.parse_expression()
                tag.params.append((param, default))
            self.next()
        elif name == "filter":
            while True:
                filter_name = self.expect(NAME).value
                args = self.parse_args() if self.at(PUNCT, "(") else Args()
                tag.filters.append((filter_name, args))
                if not self.at(OP, "|"):
                    break
                self.next()
        elif name == "block":
            tag.target = self.expect(NAME).value
        elif name == "endblock":
            if self.at(NAME):
                self.next()
        elif name not in ("else", "endif", "endfor", "endmacro", "endfilter"):
            raise self.error(f"Unexpected tag name [{name}]", token)
        return tag


def parse(source: str) -> list[Any]:
    """Parse a Pebble template into text, print and tag parts.

    Raises:
        PebbleSyntaxError: invalid syntax. LimitError: nesting too deep.
    """
    tokens = tokenize(source)
    parser = _Parser(tokens, source)
    parts = parser.parse_template()
    _check_blocks(parts, source)
    return parts


def _check_blocks(parts: list[Any], source: str) -> None:
    stack: list[Tag] = []
    for part in parts:
        if not isinstance(part, Tag):
            continue
        if part.name in _BLOCK_TAGS:
            stack.append(part)
        elif part.name in ("elseif", "else"):
            allowed = ("if",) if part.name == "elseif" else ("if", "for")
            if not stack or stack[-1].name not in allowed:
                raise PebbleSyntaxError(f"Unexpected tag name [{part.name}]", part.pos, source)
        elif part.name.startswith("end"):
            opener = part.name[3:]
            if not stack or stack[-1].name != opener:
                raise PebbleSyntaxError(f"Unexpected tag name [{part.name}]", part.pos, source)
            stack.pop()
    if stack:
        raise PebbleSyntaxError(f"Unclosed tag [{stack[-1].name}]: expected [end{stack[-1].name}]", stack[-1].pos, source)


def single_expression(parts: list[Any]) -> Any | None:
    """The expression when the template is one ``{{ expr }}`` (surrounded by whitespace at most)."""
    prints = [p for p in parts if isinstance(p, Print)]
    if len(prints) != 1:
        return None
    for part in parts:
        if isinstance(part, Tag) or (isinstance(part, Text) and part.text.strip(_WHITESPACE)):
            return None
    return prints[0].expr


# --- emitting Jinja --------------------------------------------------------------------------

# Pebble names that mean something else to Jinja's parser: resolved through __k_var instead.
_JINJA_SPECIAL_NAMES = {"if", "else", "True", "False", "None", "true", "false", "none", "self", "caller",
                        "varargs", "kwargs", "super", "not", "and", "or", "in", "is"}


def jinja_string(text: str) -> str:
    """A Jinja string literal for ``text`` (Jinja decodes backslash escapes in literals)."""
    out = ["'"]
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("\\'")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append("'")
    return "".join(out)


@dataclass
class Names:
    """What the template may call: registered functions, filters, tests and lazy filters."""

    functions: frozenset[str]
    filters: frozenset[str]
    tests: frozenset[str]
    macros: frozenset[str] = frozenset()


class _Emitter:
    def __init__(self, names: Names, source: str, set_names: frozenset[str] = frozenset()) -> None:
        self.names = names
        self.source = source
        # Pebble's {% set %} updates a variable of an enclosing scope (a counter set before a
        # loop and updated inside it keeps its value after the loop); Jinja's does not. Outside
        # macros, set variables live in a namespace object (__k_ns) to get Pebble's behaviour.
        self.set_names = set_names
        self.loop_targets: list[str] = []
        self.macro_depth = 0

    def _uses_namespace(self, name: str) -> bool:
        return name in self.set_names and self.macro_depth == 0 and name not in self.loop_targets

    def error(self, message: str) -> PebbleSyntaxError:
        return PebbleSyntaxError(message)

    def name(self, name: str) -> str:
        if name.startswith("__"):
            raise self.error(f"Names starting with '__' are reserved: {name}")
        if name in _JINJA_SPECIAL_NAMES:
            return f"__k_var({jinja_string(name)})"
        return name

    def args(self, args: Args, prefix: Iterable[str] = ()) -> str:
        parts = list(prefix)
        parts += [self.expr(a) for a in args.positional]
        for key, value in args.named:
            if key.startswith("__"):
                raise self.error(f"Names starting with '__' are reserved: {key}")
            parts.append(f"{key}={self.expr(value)}")
        return ", ".join(parts)

    def _chain(self, node: Any, ops: tuple[str, ...]) -> list[Any]:
        """Operands of a left-associative chain ``a op b op c`` (kept flat, so a long chain does
        not become deeply nested Jinja)."""
        operands: list[Any] = []
        while isinstance(node, Binary) and node.op in ops:
            operands.append(node.right)
            node = node.left
        operands.append(node)
        return operands[::-1]

    def expr(self, node: Any) -> str:
        if isinstance(node, Literal):
            value = node.value
            if value is None:
                return "none"
            if value is True:
                return "true"
            if value is False:
                return "false"
            if isinstance(value, str):
                return jinja_string(value)
            return repr(value)
        if isinstance(node, Name):
            if self._uses_namespace(node.name):
                return f"__k_setvar(__k_ns, {jinja_string(node.name)}, {self.name(node.name)})"
            return self.name(node.name)
        if isinstance(node, ListLit):
            return "[" + ", ".join(self.expr(i) for i in node.items) + "]"
        if isinstance(node, MapLit):
            return "{" + ", ".join(f"({self.expr(k)}): ({self.expr(v)})" for k, v in node.pairs) + "}"
        if isinstance(node, GetAttr):
            return f"({self.expr(node.obj)}).{node.name}"
        if isinstance(node, GetItem):
            return f"({self.expr(node.obj)})[{self.expr(node.key)}]"
        if isinstance(node, Call):
            if node.name.startswith("__"):
                raise self.error(f"Names starting with '__' are reserved: {node.name}")
            if node.name in self.names.functions:
                return f"__f_{node.name}({self.args(node.args)})"
            if node.name in self.names.macros:
                return f"{self.name(node.name)}({self.args(node.args)})"
            raise self.error(f"Function or Macro [{node.name}] does not exist.")
        if isinstance(node, MethodCall):
            return f"({self.expr(node.obj)}).{node.name}({self.args(node.args)})"
        if isinstance(node, Unary):
            if node.op == "not":
                return f"(not __k_bool({self.expr(node.operand)}))"
            return f"({node.op}({self.expr(node.operand)}))"
        if isinstance(node, Ternary):
            return f"(({self.expr(node.then)}) if __k_bool({self.expr(node.condition)}) else ({self.expr(node.otherwise)}))"
        if isinstance(node, Interpolation):
            return "__k_concat(" + ", ".join(self.expr(p) for p in node.parts) + ")" if node.parts else "''"
        if isinstance(node, Test):
            return self.test(node)
        if isinstance(node, Filter):
            return self.filter(node)
        if isinstance(node, Binary):
            return self.binary(node)
        raise self.error(f"cannot emit {type(node).__name__}")

    def binary(self, node: Binary) -> str:
        op = node.op
        if op in ("or", "and"):
            operands = self._chain(node, (op,))
            return "(" + f" {op} ".join(f"__k_bool({self.expr(o)})" for o in operands) + ")"
        if op in ("+", "-"):
            return self._arith(node, ("+", "-"))
        if op in ("*", "/", "%"):
            return self._arith(node, ("*", "/", "%"))
        if op == "~":
            operands = self._chain(node, ("~",))
            return "__k_concat(" + ", ".join(self.expr(o) for o in operands) + ")"
        if op in ("??", "???"):
            operands = self._chain(node, (op,))
            helper = "__lazy_coalesce" if op == "??" else "__lazy_undefcoalesce"
            return f"{helper}(" + ", ".join(self.expr(o) for o in operands) + ")"
        left, right = self.expr(node.left), self.expr(node.right)
        if op in ("==", "equals"):
            return f"__k_eq({left}, {right})"
        if op == "!=":
            return f"(not __k_eq({left}, {right}))"
        if op in ("<", ">", "<=", ">="):
            return f"__k_cmp({jinja_string(op)}, {left}, {right})"
        if op == "..":
            return f"__k_range({left}, {right})"
        if op == "contains":
            return f"__k_contains({left}, {right})"
        if op == "in":
            return f"__k_in({left}, {right})"
        if op == "not in":
            return f"(not __k_in({left}, {right}))"
        raise self.error(f"Unknown operator {op}")

    def _arith(self, node: Binary, ops: tuple[str, ...]) -> str:
        pieces: list[str] = []
        current: Any = node
        tail: list[tuple[str, Any]] = []
        while isinstance(current, Binary) and current.op in ops:
            tail.append((current.op, current.right))
            current = current.left
        pieces.append(f"({self.expr(current)})")
        for op, operand in reversed(tail):
            pieces.append(f" {op} ({self.expr(operand)})")
        return "(" + "".join(pieces) + ")"

    def test(self, node: Test) -> str:
        operand = self.expr(node.operand)
        if node.name == "defined":
            text = f"__lazy_defined({operand})"
            return f"(not {text})" if node.negated else text
        if node.name not in self.names.tests:
            raise self.error(f"Test [{node.name}] does not exist.")
        call = f"{node.name}({self.args(node.args)})" if node.args.positional or node.args.named else node.name
        return f"(({operand}) is {'not ' if node.negated else ''}{call})"

    def filter(self, node: Filter) -> str:
        if node.name == "default":
            values = [self.expr(a) for a in node.args.positional] + [
                self.expr(v) for k, v in node.args.named if k == "default"
            ]
            return f"__lazy_default({self.expr(node.operand)}, {values[0] if values else 'none'})"
        if node.name not in self.names.filters:
            raise self.error(f"Filter [{node.name}] does not exist.")
        # flatten a chain of filters: (x | f | g)
        chain: list[Filter] = []
        current: Any = node
        while isinstance(current, Filter) and current.name != "default" and current.name in self.names.filters:
            chain.append(current)
            current = current.operand
        text = f"({self.expr(current)})"
        for item in reversed(chain):
            args = self.args(item.args)
            text += f" | {item.name}({args})" if args else f" | {item.name}"
        return f"({text})"

    def tag(self, tag: Tag) -> str:
        if tag.name == "if":
            return f"{{% if __k_bool({self.expr(tag.expr)}) %}}"
        if tag.name == "elseif":
            return f"{{% elif __k_bool({self.expr(tag.expr)}) %}}"
        if tag.name == "for":
            return f"{{% for {self.plain_name(tag.target)} in __k_iter({self.expr(tag.expr)}) %}}"
        if tag.name == "set":
            target = self.plain_name(tag.target)
            if self._uses_namespace(target):
                return f"{{% set __k_ns.{target} = {self.expr(tag.expr)} %}}"
            return f"{{% set {target} = {self.expr(tag.expr)} %}}"
        if tag.name == "macro":
            params = []
            for param, default in tag.params:
                params.append(self.plain_name(param) + (f"={self.expr(default)}" if default is not None else ""))
            return f"{{% macro {self.plain_name(tag.target)}({', '.join(params)}) %}}"
        if tag.name == "filter":
            chain = []
            for name, args in tag.filters:
                if name not in self.names.filters:
                    raise self.error(f"Filter [{name}] does not exist.")
                rendered = self.args(args)
                chain.append(f"{name}({rendered})" if rendered else name)
            return "{% filter " + " | ".join(chain) + " %}"
        if tag.name == "block":
            return f"{{% block {self.plain_name(tag.target)} %}}"
        return f"{{% {tag.name} %}}"

    def plain_name(self, name: str | None) -> str:
        if not name or name.startswith("__") or name in _JINJA_SPECIAL_NAMES or name == "loop":
            raise self.error(f"'{name}' cannot be used as a variable name here")
        return name


def _macros(parts: list[Any]) -> frozenset[str]:
    return frozenset(p.target for p in parts if isinstance(p, Tag) and p.name == "macro" and p.target)


def emit_expression(expr: Any, names: Names) -> str:
    """Jinja source of one expression."""
    return _Emitter(names, "").expr(expr)


def emit_template(parts: list[Any], names: Names) -> str:
    """Jinja template source for parsed Pebble template parts."""
    names = Names(names.functions, names.filters, names.tests, _macros(parts))
    emitter = _Emitter(names, "", _set_names(parts))
    out: list[str] = ["{% set __k_ns = __k_namespace() %}"] if emitter.set_names else []
    for part in parts:
        if isinstance(part, Text):
            if "{" in part.text or "\r" in part.text or "#" in part.text or "%" in part.text:
                out.append("{{ " + jinja_string(part.text) + " }}")
            else:
                out.append(part.text)
        elif isinstance(part, Print):
            out.append("{{ " + emitter.expr(part.expr) + " }}")
        else:
            out.append(emitter.tag(part))
            if part.name == "for":
                emitter.loop_targets.append(part.target or "")
            elif part.name == "endfor":
                emitter.loop_targets.pop()
            elif part.name == "macro":
                emitter.macro_depth += 1
            elif part.name == "endmacro":
                emitter.macro_depth -= 1
    return "".join(out)


def _set_names(parts: list[Any]) -> frozenset[str]:
    """Variables ``{% set %}`` outside macros."""
    names: set[str] = set()
    depth = 0
    for part in parts:
        if isinstance(part, Tag):
            if part.name == "macro":
                depth += 1
            elif part.name == "endmacro":
                depth -= 1
            elif part.name == "set" and depth == 0 and part.target:
                names.add(part.target)
    return frozenset(names)


def with_macros(names: Names, parts: list[Any]) -> Names:
    """``names`` plus the macros the template defines."""
    return Names(names.functions, names.filters, names.tests, _macros(parts))
