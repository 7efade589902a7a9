"""DICOM reading (no Qt): scan a folder/zip/DICOMDIR, load a series as a Volume."""
