"""Reports and DICOM export: PDF, SR, SEG, derived series, de-identification (no Qt)."""
