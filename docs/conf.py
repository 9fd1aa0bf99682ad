"""Sphinx configuration of the series' HTML book (`make site`; staged by tcmax_lib.course.book.stage_site).

Offline by design: the theme's assets ship with its PyPI package, MathJax 3 is copied into _static/
from the PyPI package django-static-mathjax (no CDN, no npm), and notebooks are rendered from their executed
copies, not re-run. Built strictly: `tcmax site` runs sphinx with -W --keep-going, so any warning fails the build.
"""

project = "TCMax tutorial series"
author = "TCMax tutorial series contributors"
copyright = "2026, " + author

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode", "sphinx_copybutton"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_extra"]
html_extra_path = ["_extra"]        # downloads/{instructor,student}/*.ipynb, staged by book.stage_site

# notebooks: rendered with the outputs of their papermill execution (build/executed), never executed here
nb_execution_mode = "off"
nb_execution_raise_on_error = True   # if execution is ever switched on here, a failing cell fails the build
nb_render_markdown_format = "myst"
nb_ipywidgets_js = {}          # progress-bar widgets render as their text; no require.js / widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# cell tags (remove-cell, hide-input) and the <details> of Markdown solutions are set by book.stage_site
html_theme = "sphinx_book_theme"
html_title = "TCMax tutorial series"
html_static_path = ["_static"]
html_theme_options = {"show_navbar_depth": 1, "use_download_button": False, "use_fullscreen_button": False,
                      "show_toc_level": 2}
mathjax_path = "mathjax/tex-chtml.js"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_context = {"default_mode": "light"}   # an explicit mode: the theme logs a console error for an empty one
html_favicon = "_static/favicon.svg"


def _plain_docstring(app, what, name, obj, options, lines):
    """Docstrings here are plain text with Markdown-style `code`, not reStructuredText: escape what RST
    would misread (|x| substitutions, *args emphasis) and render `code` as literals."""
    import re

    for i, line in enumerate(lines):
        bullet = re.match(r"^\s*\* ", line)                   # a "* item" list bullet stays a bullet
        head, line = (line[:bullet.end()], line[bullet.end():]) if bullet else ("", line)
        line = line.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
        lines[i] = head + re.sub(r"`([^`]+)`", r"``\1``\\ ", line)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstring)
