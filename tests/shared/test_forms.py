"""Response.form(): the request a browser sends for an HTML form, from HTML fed as bytes."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from crawler.forms import FormNotFound
from crawler.spider import Request, Response

URL = "http://shop.test/account/login?next=/"


def resp(html: str, url: str = URL, charset: str = "utf-8") -> Response:
    headers = {"Content-Type": f"text/html; charset={charset}"}
    return Response(url, 200, headers, html.encode(charset))


def fields(req: Request) -> list[tuple[str, str]]:
    if req.method == "GET":
        return parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
    assert req.body is not None
    return parse_qsl(req.body.decode("ascii"), keep_blank_values=True)


LOGIN = """
<html><body>
<form id="search" action="/search"><input name="q" value="shoes"></form>
<form id="login" method="post" action="/session">
  <input type="hidden" name="csrf" value="tok-123">
  <input name="user" value="">
  <input type="password" name="password">
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="newsletter" value="yes">
  <input type="radio" name="plan" value="free">
  <input type="radio" name="plan" value="pro" checked>
  <select name="country"><option value="fr">France</option>
    <option value="de">Germany</option></select>
  <select name="lang"><option>en</option><option selected> de  DE </option></select>
  <select name="tags" multiple><option value="a" selected>A</option><option value="b">B</option>
    <option value="c" selected>C</option></select>
  <textarea name="bio">
hello
world</textarea>
  <input name="off" value="x" disabled>
  <fieldset disabled><input name="in_disabled_set" value="x"></fieldset>
  <input value="no name">
  <input type="reset" name="reset" value="r">
  <input type="button" name="btn" value="b">
  <input type="submit" name="go" value="Log in">
  <button name="alt" value="other">Other</button>
</form>
</body></html>
"""


def test_first_form_by_default_is_get_with_query() -> None:
    req = resp(LOGIN).form()
    assert req.method == "GET"
    assert req.url == "http://shop.test/search?q=shoes"
    assert req.body is None


def test_login_form_every_successful_control_in_order() -> None:
    req = resp(LOGIN).form("#login", formdata={"user": "ann", "password": "pw"})
    assert req.method == "POST"
    assert req.url == "http://shop.test/session"
    assert dict(req.headers)["Content-Type"] == "application/x-www-form-urlencoded"
    assert fields(req) == [
        ("csrf", "tok-123"),
        ("user", "ann"),
        ("password", "pw"),
        ("remember", "on"),
        ("plan", "pro"),
        ("country", "fr"),
        ("lang", "de DE"),
        ("tags", "a"),
        ("tags", "c"),
        ("bio", "hello\nworld"),
        ("go", "Log in"),
    ]


def test_select_by_xpath_and_by_inner_element() -> None:
    page = resp(LOGIN)
    assert page.form("//form[@id='login']").url == "http://shop.test/session"
    assert page.form("input[name=csrf]").url == "http://shop.test/session"
    assert page.form("//input[@name='q']").url.startswith("http://shop.test/search")


def test_clickdata_picks_the_button() -> None:
    page = resp(LOGIN)
    assert ("alt", "other") in fields(page.form("#login", clickdata={"name": "alt"}))
    assert ("go", "Log in") not in fields(page.form("#login", clickdata={"name": "alt"}))
    assert ("alt", "other") in fields(page.form("#login", clickdata={"nr": 1}))
    with pytest.raises(FormNotFound):
        page.form("#login", clickdata={"name": "nope"})


def test_formdata_replaces_adds_and_removes() -> None:
    req = resp(LOGIN).form(
        "#login", formdata={"csrf": None, "tags": ["b"], "extra": "1", "plan": "free"}
    )
    got = fields(req)
    assert "csrf" not in dict(got)
    assert [v for k, v in got if k == "tags"] == ["b"]
    assert dict(got)["plan"] == "free"
    assert got[-1] == ("extra", "1")


def test_action_resolved_against_base_href_and_empty_action() -> None:
    html = (
        '<base href="http://cdn.test/app/">'
        '<form method=POST action="do"><input name=a value=1></form>'
    )
    assert resp(html).form().url == "http://cdn.test/app/do"
    assert resp("<form method=post><input name=a value=1></form>").form().url == URL
    get = resp('<form action="/find?old=1#frag"><input name=a value="x y"></form>').form()
    assert get.url == "http://shop.test/find?a=x+y"


def test_multipart_enctype() -> None:
    html = """<form method=post action=/up enctype="multipart/form-data">
      <input type=hidden name=csrf value=t1><input type=file name=doc>
      <input type=submit name=send value=Send></form>"""
    req = resp(html).form(formdata={"title": "héllo"})
    ctype = dict(req.headers)["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    assert req.body is not None
    body = req.body
    assert b'name="csrf"\r\n\r\nt1\r\n' in body
    assert b'name="doc"; filename=""' in body
    assert b'name="send"\r\n\r\nSend\r\n' in body
    assert 'name="title"\r\n\r\nhéllo'.encode() in body


def test_image_button_and_button_formaction() -> None:
    html = """<form action=/a method=post><input name=k value=v>
      <input type=image name=pic src=x.png>
      <button formaction=/b formmethod=get name=b value=1>B</button></form>"""
    page = resp(html)
    assert fields(page.form()) == [("k", "v"), ("pic.x", "0"), ("pic.y", "0")]
    other = page.form(clickdata={"name": "b"})
    assert other.method == "GET"
    assert other.url == "http://shop.test/b?k=v&b=1"


def test_controls_outside_the_form_with_form_attribute() -> None:
    html = """<form id=f action=/x method=post><input name=a value=1></form>
      <input name=b value=2 form=f><input name=c value=3>"""
    assert fields(resp(html).form()) == [("a", "1"), ("b", "2")]


def test_page_encoding_used_for_urlencoding() -> None:
    html = '<form action=/s><input name=q value="café"></form>'
    req = resp(html, charset="latin-1").form()
    assert req.url == "http://shop.test/s?q=caf%E9"


def test_no_form_raises() -> None:
    with pytest.raises(FormNotFound):
        resp("<p>no form</p>").form()
    with pytest.raises(ValueError):
        resp(LOGIN).form("#missing")
    with pytest.raises(FormNotFound):
        Response(URL, 200, {"Content-Type": "image/png"}, b"\x89PNG").form()


def test_form_keeps_the_page_session_and_takes_request_keywords() -> None:
    page = Response(
        URL, 200, {"Content-Type": "text/html"}, LOGIN.encode(), meta={"_session": "buyer"}
    )
    req = page.form("#login", callback="after_login", priority=5)
    assert req.session == "buyer"
    assert req.callback == "after_login"
    assert req.priority == 5
