"""The request a browser sends for an HTML form: :func:`form_request` (``Response.form``).

How this works: pure, over the lxml tree a ``Response`` already parsed. The form is picked by a
CSS or XPath query (an element inside a form picks that form), or is the page's first. Its
entry list follows the HTML standard's "constructing the entry list": controls of the form (its
descendants and elements elsewhere naming it with ``form="id"``), in tree order, without the
disabled ones (also inside a disabled ``<fieldset>``) or those without a name; checkboxes and
radios only when checked (value ``"on"`` by default); a ``<select>``'s selected options, or
its first enabled one for a single-choice select; a ``<textarea>``'s text; buttons only the one
clicked (the first submit button unless ``clickdata`` says which; an image button sends
``name.x`` and ``name.y``). ``formdata`` then replaces or adds values. The data is sent as
``application/x-www-form-urlencoded`` in the page's encoding (in the query for GET), or as
``multipart/form-data`` when the form's ``enctype`` says so.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus, urljoin, urlsplit, urlunsplit

from cssselect import HTMLTranslator

from crawler.errors import FormNotFound
from crawler.http import encode_multipart_formdata

__all__ = ["FormNotFound", "form_request"]

FormData = Mapping[str, str | Iterable[str] | None]

_SUBMIT_INPUTS = frozenset({"submit", "image"})
_NEVER_SENT = frozenset({"reset", "button"})


def _is_xpath(query: str) -> bool:
    return query.startswith(("/", "(", "./", "descendant", "id("))


def find_form(root: Any, query: str | None) -> Any:
    """The ``<form>`` element ``query`` names (or contains the match), else the first form."""
    if root is None:
        raise FormNotFound("the response is not an HTML page")
    if query is None:
        forms = root.xpath("//form")
    else:
        if _is_xpath(query):
            found = root.xpath(query)
        else:
            found = root.xpath(HTMLTranslator().css_to_xpath(query))
        forms = []
        for element in found:
            if not hasattr(element, "tag"):
                continue
            form = element if element.tag == "form" else _ancestor_form(element)
            if form is not None:
                forms.append(form)
    if not forms:
        raise FormNotFound(f"no <form> matches {query!r}" if query else "the page has no <form>")
    return forms[0]


def _ancestor_form(element: Any) -> Any:
    for parent in element.iterancestors("form"):
        return parent
    owner = element.get("form")
    if owner:
        found = element.getroottree().getroot().xpath("//form[@id=$id]", id=owner)
        return found[0] if found else None
    return None


def _controls(form: Any) -> list[Any]:
    """The form's listed elements in tree order: descendants and ``form="id"`` owners."""
    root = form.getroottree().getroot()
    names = "self::input or self::select or self::textarea or self::button"
    form_id = form.get("id")
    if form_id:
        query = f"//*[({names}) and (ancestor::form[1] = $form or @form = $id)]"
        found = root.xpath(query, form=form, id=form_id)
        # An element of another form that names this one with form= belongs to this one;
        # one inside this form naming another does not.
        return [e for e in found if not e.get("form") or e.get("form") == form_id]
    return [e for e in form.xpath(f".//*[{names}]") if not e.get("form")]


def _disabled(element: Any) -> bool:
    if element.get("disabled") is not None:
        return True
    for fieldset in element.iterancestors("fieldset"):
        if fieldset.get("disabled") is not None:
            # The first <legend> of a disabled fieldset stays enabled.
            legend = next(fieldset.iterchildren("legend"), None)
            if legend is None or element not in set(legend.iterdescendants()):
                return True
    return False


def _type(element: Any) -> str:
    if element.tag == "button":
        kind = str(element.get("type") or "submit").lower()
        return kind if kind in ("submit", "reset", "button") else "submit"
    if element.tag == "input":
        return str(element.get("type") or "text").lower()
    return str(element.tag)


def _is_submitter(element: Any) -> bool:
    kind = _type(element)
    return kind in _SUBMIT_INPUTS if element.tag == "input" else kind == "submit"


def _pick_submitter(controls: list[Any], clickdata: Mapping[str, Any] | None) -> Any:
    buttons = [e for e in controls if _is_submitter(e) and not _disabled(e)]
    if clickdata is None:
        return buttons[0] if buttons else None
    attrs = dict(clickdata)
    nr = attrs.pop("nr", None)
    matches = [e for e in buttons if all(e.get(k) == str(v) for k, v in attrs.items())]
    if nr is not None:
        matches = matches[int(nr) : int(nr) + 1]
    if not matches:
        raise FormNotFound(f"no submit button matches {dict(clickdata)!r}")
    return matches[0]


def _option_value(option: Any) -> str:
    value = option.get("value")
    if value is None:
        value = " ".join((option.text_content() or "").split())
    return str(value)


def entry_list(form: Any, submitter: Any) -> list[tuple[str, str | tuple[str, bytes]]]:
    """The (name, value) pairs a browser submits; a file input's value is (filename, data)."""
    entries: list[tuple[str, str | tuple[str, bytes]]] = []
    for element in _controls(form):
        name = element.get("name")
        kind = _type(element)
        if _disabled(element):
            continue
        if element is submitter and kind == "image":
            prefix = f"{name}." if name else ""
            entries += [(f"{prefix}x", "0"), (f"{prefix}y", "0")]
            continue
        if not name:
            continue
        if kind in _NEVER_SENT or (kind in ("submit", "image") and element is not submitter):
            continue
        if element.tag == "select":
            options = [o for o in element.iter("option")]
            chosen = [o for o in options if o.get("selected") is not None]
            multiple = element.get("multiple") is not None
            if not chosen and not multiple:
                size = element.get("size")
                if not size or not size.isdigit() or int(size) <= 1:
                    enabled = [o for o in options if o.get("disabled") is None]
                    chosen = enabled[:1]
            if not multiple:
                chosen = chosen[-1:]  # a single select shows the last option marked selected
            entries += [(name, _option_value(o)) for o in chosen if o.get("disabled") is None]
        elif element.tag == "textarea":
            text = element.text or ""
            entries.append((name, text[1:] if text.startswith("\n") else text))
        elif kind in ("checkbox", "radio"):
            if element.get("checked") is not None:
                entries.append((name, element.get("value") or "on"))
        elif kind == "file":
            entries.append((name, ("", b"")))
        else:
            entries.append((name, element.get("value") or ""))
    return entries


def _apply(
    entries: list[tuple[str, str | tuple[str, bytes]]], formdata: FormData | None
) -> list[tuple[str, str | tuple[str, bytes]]]:
    if not formdata:
        return entries
    out: list[tuple[str, str | tuple[str, bytes]]] = []
    placed: set[str] = set()
    for name, value in entries:
        if name not in formdata:
            out.append((name, value))
        elif name not in placed:  # the new value(s) go where the control was
            placed.add(name)
            out.extend((name, v) for v in _values(formdata[name]))
    for name, new in formdata.items():
        if name not in placed:
            out.extend((name, v) for v in _values(new))
    return out


def _values(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _urlencode(entries: list[tuple[str, Any]], encoding: str) -> str:
    def enc(text: str) -> str:
        return quote_plus(text, encoding=encoding, errors="xmlcharrefreplace")

    return "&".join(
        f"{enc(name)}={enc(value if isinstance(value, str) else value[0])}"
        for name, value in entries
    )


def _form_encoding(form: Any, page_encoding: str) -> str:
    for label in (form.get("accept-charset") or "").replace(",", " ").split():
        try:
            return codecs.lookup(label).name
        except LookupError:
            continue
    return page_encoding


def form_request(
    root: Any,
    base_url: str,
    page_url: str,
    encoding: str,
    query: str | None = None,
    formdata: FormData | None = None,
    clickdata: Mapping[str, Any] | None = None,
) -> tuple[str, str, dict[str, str], bytes | None]:
    """``(method, url, headers, body)`` of the form's submission (see the module docstring)."""
    form = find_form(root, query)
    controls = _controls(form)
    submitter = _pick_submitter(controls, clickdata)
    entries = _apply(entry_list(form, submitter), formdata)

    def attr(name: str) -> str | None:
        # The clicked button's formaction/formmethod/formenctype win over the form's own.
        if submitter is not None and submitter.get(f"form{name}") is not None:
            return str(submitter.get(f"form{name}"))
        value = form.get(name)
        return None if value is None else str(value)

    action = (attr("action") or "").strip()
    url = urljoin(base_url, action) if action else page_url
    method = (attr("method") or "get").strip().upper()
    if method not in ("GET", "POST"):
        method = "GET"
    enctype = (attr("enctype") or "").strip().lower()
    charset = _form_encoding(form, encoding)
    headers: dict[str, str] = {}
    if method == "GET":
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, _urlencode(entries, charset), ""))
        return method, url, headers, None
    url = urlunsplit(urlsplit(url)._replace(fragment=""))
    if enctype == "multipart/form-data":
        fields = [
            (name, value if isinstance(value, str) else (value[0], value[1]))
            for name, value in entries
        ]
        body, content_type = encode_multipart_formdata(fields)
        headers["Content-Type"] = content_type
        return method, url, headers, body
    if enctype == "text/plain":
        text = "".join(f"{n}={v if isinstance(v, str) else v[0]}\r\n" for n, v in entries)
        headers["Content-Type"] = "text/plain"
        return method, url, headers, text.encode(charset, "xmlcharrefreplace")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return method, url, headers, _urlencode(entries, charset).encode("ascii")
