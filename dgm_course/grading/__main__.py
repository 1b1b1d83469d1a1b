"""`python -m dgm_course.grading`: see dgm_course.grading.main."""

import sys

from . import main

sys.exit(main())
