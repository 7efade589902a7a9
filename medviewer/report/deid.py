"""De-identification: DICOM PS3.15 Basic Application Level Confidentiality Profile.

Neither pydicom nor highdicom ships the profile, so its action table
(PS3.15 Annex E, Table E.1-1, 2023 edition) is kept here as data:
``ACTIONS`` maps each attribute tag to the action codes of the standard:

* ``D`` replace with a dummy value consistent with the VR;
* ``Z`` replace with a zero-length value (or a dummy, which the standard allows);
* ``X`` remove;
* ``U`` replace the UID with another, consistently within the export;
* combined codes (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) are
  resolved to the least destructive choice that keeps the object valid:
  dates and times are *shifted* (``D``), other ``X/Z*`` become ``Z`` and
  ``X/D`` become ``X``; ``X/Z/U*`` sequences keep their items with all UIDs
  replaced.

On top of the table the :class:`Deidentifier`:

* removes every private attribute, and the curve (50xx) and overlay (60xx)
  repeating groups;
* replaces every other UID that is not a standard (registered) UID or a
  class UID, so that nothing links back to the source, with the same new
  UID everywhere in one export (salted SHA-256 -> ``2.25.<int>``, a fresh
  random salt per export, so two exports of the same study do not link);
* replaces the patient's name and ID with one pseudonym (``ANON...``);
* shifts every date by one random whole number of days per export (the
  Retain Longitudinal Temporal Information with Modified Dates option), so
  intervals are kept and the original dates are gone;
* cleans the remaining free text (and the report's impression and notes) of
  every identifying value the source held: names, IDs, dates, institution...;
* sets PatientIdentityRemoved ``YES``, LongitudinalTemporalInformationModified
  ``MODIFIED``, DeidentificationMethod and DeidentificationMethodCodeSequence
  (DCM 113100, 113107).

One :class:`Deidentifier` must be used for every object of one export: that
is what keeps the UIDs (Study, Series, Frame of Reference, referenced SOP
instances) consistent between the SEG, SR, key images and derived series.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID_dictionary

# --------------------------------------------------------------------------------------------
# PS3.15 Table E.1-1 (2023), Basic Profile column. One tag per token, "GGGGEEEE", grouped by action.
_TABLE = {
    "D": """
001811BB 006A0005 006A0003 00440104 04000562 300C0127 04000115 00120081 00120020 00120010
00120040 00120042 00400512 0040A730 00080107 00080106 0040A121 0040A120 00189701 21000140
3010002D 04000105 00686226 00420011 30100035 30100038 00189804 00340002 00340001 00189074
00340007 00189151 00189623 00700001 0072000A 003A0314 00686270 300A0741 300A0742 300A0783
04000563 300A0760 00401101 0040A123 300A0002 30100054 300A062A 300A0619 300A0623 300A067C
04000565 300A073A 0040A13A 30080162 30080164 30080166 30080168 0072005E 0072005F 00720061
00720063 00720066 00720068 00720065 0072006A 0072006C 0072006E 0072006B 0072006D 00720071
00720070 0018936A 00340005 00189369 300A022C 300A022E 00400551 30060002 0040A122 30080024
30080025 300A0608 300A0736 300A0734 30100033 30100034 0040A030 0040A075 0040A073 0040A027
00189371 00189367
""",
    "Z": """
00080050 00181203 00120060 00120021 00120030 00120031 00120050 3010000F 30100017 0008009C
3010001B 00402017 3010007F 00400513 00400562 30100043 0040A082 00100020 00100030 00100010
00100040 00402016 3010007B 30100081 300600A6 30060026 300A0615 300A0611 3010005A 300A067D
3010005C 00080090 300E0004 300E0005 04000564 00400610 30060008 30060009 00080020 00200010
00080030 3010007A 0040A088
""",
    "X": """
00184000 00189424 00404035 001021B0 0040A353 00380010 00380020 00081084 00081080 00380021
00001000 00102110 006A0006 00440004 40000010 00440105 0040A078 300A00C3 300A00DD 00101081
0014407E 0014407C 0016004D 00181007 04000310 00120082 00120072 00120071 00120051 00400310
00400280 300A02EB 00403001 0008009D 0050001B 0040051A 00700086 00181042 00181043 0018A002
0018A003 00102150 21000040 21000050 0040A307 00380300 00080025 00080035 0040A07C FFFCFFFC
0040A110 00181205 00181200 00181204 00181012 00181202 0018937F 00082111 00500020 0016004B
FFFAFFFA 00380030 00380040 00380032 300A079A 4008011A 40080119 300A0016 30100037 30100036
300A0676 00120087 00120086 00102160 00404011 003A032B 0040A023 0040A024 300A0196 300A0072
00209158 00160076 00160075 0016008C 0016007B 0016008D 00160088 0016008A 00160089 00160086
00160085 00160087 00160084 00160083 0016008E 00160081 00160080 00160072 00160071 00160074
00160073 00160082 0016007A 0016008B 00160078 0016007D 0016007C 00160079 00160077 0016007F
0016007E 00160070 00181008 00181005 0040E004 00404037 00404036 00880200 00084000 00204000
00284000 00402400 40080300 00080015 04000600 00080081 00081040 00081041 00101050 30100085
00401011 40080112 40080113 40080111 4008010C 40080115 40080200 40080202 40080100 40080101
40080102 4008010B 4008010A 40080108 40080109 00180035 00180027 00402004 00402005 00380011
00380014 00100021 00380061 00380064 001021D0 0016004F 00160050 00160051 0016004E 00500021
04000404 0016002B 00102000 00101090 00101080 04000550 00203403 00203406 00203405 00203401
0018937B 00081060 00401010 00081000 04000552 04000551 0040A192 0040A033 0040A193 00102180
00402010 00402011 00402008 00402009 04000561 21000070 00101000 00101002 00101001 00080024
00080034 0040A07A 00104000 300A0794 00380500 00401004 300A0792 300A078E 00101040 00101010
00101005 00100032 00380400 00100050 00101060 00100101 00100102 001021F0 00101020 00102155
00102154 00101030 00400243 00400254 00400250 00404051 00400251 00400253 00400244 00404050
00400245 00400241 00404030 00400242 00404028 00081052 00081050 00401102 00401104 00401103
40080114 00081062 00081048 00081049 00181004 30020123 30020121 00400012 001021C0 300A000E
00700082 00700083 30100061 00404052 0044000B 00081088 00200027 30060028 30060038 30060088
30060085 300A0004 300A0003 00181078 00181072 00181079 00181073 300C0113 0040100A 00321030
00321066 00321067 00402001 00401002 00741234 04000402 00380004 00101100 00081120 04000403
00080096 00080092 00080094 00102152 00400275 00321070 00401400 00401001 00401005 00189937
00741236 00321032 00321033 00189185 00102299 00102297 40084000 40080118 40080040 40080042
00080054 01000420 0038001A 0038001B 0038001C 0038001D 00404034 0038001E 0040000B 00400006
00400007 00400004 00400005 00404008 00400009 00400011 00404010 00400002 00404005 00400003
00400001 00404027 00400010 00404025 00321020 00321021 00321000 00321001 00321010 00321011
0008103E 00380062 00380060 300A01B2 300A01A6 004006FA 001021A0 300A0216 00380050 0040050A
00400602 00400600 00080055 30060006 30060004 00321040 00321041 00324000 00321050 00321051
00081030 00320012 00320034 00320035 00320032 00320033 00440010 0040A354 0040DB07 0040DB06
40004000 20300020 0040A112 00181201 00181014 00080201 00880910 00880912 00880906 00880904
00185011 300A000B 0018100A 00181009 0040A352 0040A358 00384000 00189373 003A0329
""",
    "U": """
00080017 00209161 30100006 30100013 00181002 04000100 00209164 300A0013 3010006E 00080058
0070031A 00200052 00080014 00083010 00281214 0018100B 00020003 003A0310 0040A402 0040A171
00281199 300A0650 00701101 00701102 00080019 3010003B 3010000B 300A0083 3010006F 30100031
30060024 00404023 0040A172 00081155 00041511 300A0785 300600C2 00001001 00080018 0020000E
30100015 00640003 00400554 00880140 0020000D 00200200 00182042 0040DB0D 0040DB0C 00620021
00081195 300A0609 300A0700 0040A124
""",
    "Z/D": "00700084 00080023 00080033 00180010 00189919",
    "X/Z": "00400555 00080022 00080032 22000005 22000002 00102203 00081110 00321060 300E0008 30080105 300A00B2",
    "X/D": """
00181400 0018700C 0018700A 00189517 30080054 00080012 3010004D 3010004C 30080056 0040A032
00081072 00181030 300A0006 300A0007 30100056 00080021 00080031 00189516 0018700E 30080250
30100077 30080251
""",
    "X/Z/D": "0008002A 00181000 00080013 00080082 00080080 00081070 00081111 00081010",
    "X/Z/U*": "00081140 00082112",
}

ACTIONS: dict[BaseTag, str] = {
    Tag(int(token, 16)): action for action, block in _TABLE.items() for token in block.split()
}
"""PS3.15 Table E.1-1 Basic Profile actions by tag."""

# UIDs that name a *class* or a coding resource, never an instance: kept.
_CLASS_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "ReferencedSOPClassUIDInFile",
        "ReferencedTransferSyntaxUIDInFile",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
        "SOPClassesSupported",
    }
)

_DUMMY = "ANONYMIZED"
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "PN"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})


def _resolve(action: str, vr: str) -> str:
    """Collapse a combined action code into the one applied (see module docstring)."""
    if action in ("D", "Z", "X", "U"):
        return action
    if action == "X/Z/U*":
        return "U*"
    if "D" in action and vr in _DATE_VRS:
        return "D"
    if action == "Z/D":
        return "Z"
    if action == "X/D":
        return "X"
    return "Z"  # X/Z, X/Z/D: keep Type 2 attributes present, empty


@dataclass
class Deidentifier:
    """Apply the Basic Profile consistently to every object of one export.

    Parameters
    ----------
    salt : bytes, optional
        Secret that seeds the UID and pseudonym hashes; random by default.
    date_shift_days : int, optional
        Days subtracted from every date; a random 365..3650 by default.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.PatientName = "Doe^John"; ds.PatientID = "12345"; ds.StudyDate = "20200102"
    >>> ds.StudyInstanceUID = "1.2.3.4"
    >>> d = Deidentifier(salt=b"s", date_shift_days=10)
    >>> out = d.apply(ds)
    >>> str(out.PatientName).startswith("ANON"), out.StudyDate in ("", None), out.PatientIdentityRemoved
    (True, True, 'YES')
    >>> out.StudyInstanceUID == d.uid("1.2.3.4") != "1.2.3.4"
    True
    """

    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    date_shift_days: int = field(default_factory=lambda: 365 + secrets.randbelow(3286))
    phi_values: set[str] = field(default_factory=set)
    """Identifying strings seen in the sources; scrubbed from remaining free text."""
    _uids: dict[str, str] = field(default_factory=dict)
    _issued: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ values
    def uid(self, uid: str) -> str:
        """The replacement for ``uid`` (same input, same output, within this export)."""
        uid = str(uid).strip().rstrip("\x00")
        if not uid:
            return uid
        new = self._uids.get(uid)
        if new is None:
            digest = hashlib.sha256(self.salt + b"uid:" + uid.encode()).digest()
            new = "2.25." + str(int.from_bytes(digest[:16], "big"))
            self._uids[uid] = new
            self._issued.add(new)
        return new

    def pseudonym(self, patient_id: str, patient_name: str = "") -> str:
        """A stable per-export pseudonym for a patient (``ANON`` + 10 hex digits)."""
        key = f"{patient_id}\x00{patient_name}".encode()
        return "ANON" + hashlib.sha256(self.salt + b"pid:" + key).hexdigest()[:10].upper()

    def shift_date(self, value: str) -> str:
        """Shift a DA (``YYYYMMDD``) or the date part of a DT value; bad input -> ``19000101``."""
        value = str(value).strip()
        if not value:
            return value
        try:
            d = _dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
        except (ValueError, IndexError):
            return "19000101"
        try:
            return (d - _dt.timedelta(days=self.date_shift_days)).strftime("%Y%m%d")
        except OverflowError:
            return "19000101"

    def _dummy(self, elem: DataElement) -> Any:
        vr = elem.VR
        if vr == "DA":
            return self.shift_date(str(elem.value)) if elem.value else "19000101"
        if vr == "DT":
            return (self.shift_date(str(elem.value)[:8]) if elem.value else "19000101") + "000000"
        if vr == "TM":
            return "000000"
        if vr == "UI":
            return self.uid(str(elem.value)) if elem.value else None
        if vr == "AS":
            return "000Y"
        if vr in ("DS", "IS"):
            return "0"
        if vr in ("FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"):
            return 0
        if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            return b""
        if vr == "AE":
            return "ANONYMIZED"
        return _DUMMY

    # ---------------------------------------------------------------- collect
    def collect(self, datasets: Iterable[Dataset]) -> None:
        """Remember the identifying values of source datasets, to clean free text later."""
        for ds in datasets:
            self._collect(ds)

    def _collect(self, ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    self._collect(item)
                continue
            if elem.tag not in ACTIONS or elem.VR == "UI" or elem.value in (None, "", b""):
                continue
            if elem.VR not in _TEXT_VRS | _DATE_VRS | {"CS", "AS", "AE", "UR"}:
                continue
            values = elem.value if elem.VM > 1 else [elem.value]
            for v in values:
                self.add_phi(str(v))
                if elem.VR == "PN":
                    for part in re.split(r"[\^=]", str(v)):
                        self.add_phi(part)

    def add_phi(self, value: str) -> None:
        """Add one identifying value (shorter than 3 characters ignored: too generic)."""
        v = str(value).strip()
        if len(v) >= 3 and v.upper() != _DUMMY:
            self.phi_values.add(v)

    def clean_text(self, text: str) -> str:
        """Replace every known identifying value in ``text`` by ``[removed]``."""
        if not text or not self.phi_values:
            return text
        for v in sorted(self.phi_values, key=len, reverse=True):
            text = re.sub(re.escape(v), "[removed]", text, flags=re.IGNORECASE)
        return text

    # ------------------------------------------------------------------ apply
    def apply(self, ds: Dataset, *, in_place: bool = False) -> Dataset:
        """De-identify ``ds`` (and its file meta) with the Basic Profile.

        Parameters
        ----------
        ds : Dataset
            A source header or an exported object.
        in_place : bool
            Modify ``ds`` instead of a deep copy.

        Returns
        -------
        Dataset
            The de-identified dataset.
        """
        if not in_place:
            ds = _deepcopy(ds)
        pid = str(ds.get("PatientID", "") or "")
        pname = str(ds.get("PatientName", "") or "")
        self._collect(ds)  # its own identifying values are cleaned from its free text too
        # highdicom shares item datasets between sequences (and deepcopy keeps the sharing):
        # each dataset is cleaned once, so nothing is shifted or remapped twice.
        self._seen: set[int] = set()
        self._clean_dataset(ds)
        if "PatientID" in ds or "PatientName" in ds:
            pseudo = self.pseudonym(pid, pname)
            ds.PatientID = pseudo
            ds.PatientName = pseudo
        if getattr(ds, "file_meta", None) is not None:
            self._clean_dataset(ds.file_meta)
            if "SOPInstanceUID" in ds:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        ds.DeidentificationMethod = "PS3.15 Basic Profile, dates shifted (MedViewer)"
        ds.DeidentificationMethodCodeSequence = Sequence([_code("113100", "Basic Application Confidentiality Profile"),
                                                          _code("113107", "Retain Longitudinal Temporal Information Modified Dates Option")])
        return ds

    def _clean_dataset(self, ds: Dataset) -> None:
        seen = getattr(self, "_seen", None)
        if seen is not None:
            if id(ds) in seen:
                return
            seen.add(id(ds))
        for tag in list(ds.keys()):
            elem = ds[tag]
            group = tag.group
            if tag.is_private or 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
                del ds[tag]
                continue
            action = ACTIONS.get(tag)
            if action is None:
                self._keep(ds, elem)
                continue
            act = _resolve(action, elem.VR)
            if act == "X":
                del ds[tag]
            elif act == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else None
            elif act == "U":
                elem.value = self._map_uids(elem.value)
            elif act == "U*" or (act == "D" and elem.VR == "SQ"):
                for item in elem.value or []:
                    self._clean_dataset(item)
            else:  # D
                if elem.value in (None, "", b"") and elem.VR != "SQ":
                    continue
                elem.value = self._dummy(elem) if elem.VM <= 1 else [self._dummy(DataElement(tag, elem.VR, v)) for v in elem.value]

    def _keep(self, ds: Dataset, elem: DataElement) -> None:
        if elem.VR == "SQ":
            for item in elem.value or []:
                self._clean_dataset(item)
        elif elem.VR == "UI":
            if elem.keyword not in _CLASS_UID_KEYWORDS:
                elem.value = self._map_uids(elem.value)
        elif elem.VR in _TEXT_VRS and elem.value and self.phi_values:
            if elem.VM > 1:
                elem.value = [self.clean_text(str(v)) for v in elem.value]
            else:
                elem.value = self.clean_text(str(elem.value))

    def _map_uids(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str):
            return [self._map_one(v) for v in value]
        return self._map_one(value)

    def _map_one(self, uid: Any) -> str:
        s = str(uid)
        if s in UID_dictionary:  # a standard UID (SOP class, coding scheme...): not an identifier
            return s
        if s in self._issued:  # already a replacement (objects share items): keep
            return s
        return self.uid(s)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _deepcopy(ds: Dataset) -> Dataset:
    import copy

    return copy.deepcopy(ds)


def profile_tags_present(ds: Dataset) -> list[BaseTag]:
    """Tags of ``ds`` (top level) that the Basic Profile acts on; used by tests and audits."""
    return [t for t in ds.keys() if t in ACTIONS]


__all__ = ["ACTIONS", "Deidentifier", "profile_tags_present"]
