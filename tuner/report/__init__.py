"""HTML reports: a trial, a study, a validation or a nightly bench as one page."""
