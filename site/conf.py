"""Sphinx configuration of the course site. `python -m dgm_course.site` copies it beside the pages it stages.

MyST-NB renders the notebooks as they were executed by `python -m dgm_course.run`: nothing runs here.
"""

from dgm_course import REPOSITORY

project = "Deep Generative Models, from background to diffusion"
html_title = project
extensions = ["myst_nb"]
exclude_patterns = ["_build", "student"]  # student/ holds the downloads, not pages

nb_execution_mode = "off"  # show the stored outputs, figures and widget state; never execute
nb_merge_streams = True  # one block per cell for what it printed
myst_enable_extensions = ["dollarmath", "amsmath"]  # the lectures' $...$ and $$...$$ LaTeX

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": REPOSITORY,
    "use_repository_button": True,
    "use_download_button": False,  # the page's source is the executed solution; students download theirs instead
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "footer_content_items": [],  # no "By <author>" line: the repository button names where the course lives
}
html_copy_source = False  # the executed notebooks are large and are not offered: only the student versions are
html_show_sourcelink = False
