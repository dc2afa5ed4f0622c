"""Choices of the pipeline app, with translated labels, and the Reference Security Incident
Taxonomy (RSIT, the taxonomy of the TF-CSIRT / ENISA reference working group) that events are
classified with."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class FeedFormat(models.TextChoices):
    CSV = "csv", _("CSV")
    JSONL = "jsonl", _("JSON lines")
    INTELMQ = "intelmq", _("IntelMQ events (JSON lines or a JSON array)")
    STIX = "stix", _("STIX 2.1 bundle")
    MISP = "misp", _("MISP feed (MISP event JSON)")


# Formats read as one JSON document (streamed) rather than line by line: before the run is
# split, each record that may become an event is written as one line of the run's lines file.
DOCUMENT_FORMATS = (FeedFormat.STIX, FeedFormat.MISP)


class FeedSource(models.TextChoices):
    UPLOAD = "upload", _("Uploads only (web, REST, command line)")
    URL = "url", _("HTTP(S) URL pulled on a schedule")
    DIRECTORY = "directory", _("Watched directory")
    TAXII = "taxii", _("TAXII 2.1 collection pulled on a schedule")


class Encoding(models.TextChoices):
    UTF8 = "utf-8", _("UTF-8")
    LATIN1 = "latin-1", _("ISO-8859-1 (Latin-1)")
    CP1252 = "cp1252", _("Windows-1252")


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class RunSource(models.TextChoices):
    UPLOAD = "upload", _("Upload (web)")
    API = "api", _("REST API")
    CLI = "cli", _("Command line")
    DEMO = "demo", _("Demo data")
    URL = "url", _("Pulled from a URL")
    DIRECTORY = "directory", _("Watched directory")
    TAXII = "taxii", _("TAXII collection")


# RSIT: taxonomy -> its types (https://github.com/enisaeu/Reference-Security-Incident-Taxonomy-Task-Force).
RSIT: dict[str, tuple[str, ...]] = {
    "abusive-content": ("spam", "harmful-speech", "violence"),
    "malicious-code": ("infected-system", "c2-server", "malware-distribution", "malware-configuration"),
    "information-gathering": ("scanner", "sniffing", "social-engineering"),
    "intrusion-attempts": ("ids-alert", "brute-force", "exploit"),
    "intrusions": (
        "privileged-account-compromise",
        "unprivileged-account-compromise",
        "application-compromise",
        "system-compromise",
        "burglary",
    ),
    "availability": ("dos", "ddos", "outage", "sabotage"),
    "information-content-security": (
        "unauthorised-information-access",
        "unauthorised-information-modification",
        "data-loss",
        "data-leak",
    ),
    "fraud": ("unauthorised-use-of-resources", "copyright", "masquerade", "phishing"),
    "vulnerable": (
        "weak-crypto",
        "ddos-amplifier",
        "potentially-unwanted-accessible",
        "information-disclosure",
        "vulnerable-system",
    ),
    "other": ("other", "undetermined"),
    "test": ("test",),
}
# Every RSIT type belongs to exactly one taxonomy: the type names the classification.
TAXONOMY_OF: dict[str, str] = {kind: taxonomy for taxonomy, kinds in RSIT.items() for kind in kinds}


class Taxonomy(models.TextChoices):
    ABUSIVE_CONTENT = "abusive-content", _("Abusive content")
    MALICIOUS_CODE = "malicious-code", _("Malicious code")
    INFORMATION_GATHERING = "information-gathering", _("Information gathering")
    INTRUSION_ATTEMPTS = "intrusion-attempts", _("Intrusion attempts")
    INTRUSIONS = "intrusions", _("Intrusions")
    AVAILABILITY = "availability", _("Availability")
    INFORMATION_CONTENT_SECURITY = "information-content-security", _("Information content security")
    FRAUD = "fraud", _("Fraud")
    VULNERABLE = "vulnerable", _("Vulnerable")
    OTHER = "other", _("Other")
    TEST = "test", _("Test")


class EventType(models.TextChoices):
    SPAM = "spam", _("Spam")
    HARMFUL_SPEECH = "harmful-speech", _("Harmful speech")
    VIOLENCE = "violence", _("Child sexual exploitation, sexual content, glorification of violence")
    INFECTED_SYSTEM = "infected-system", _("Infected system")
    C2_SERVER = "c2-server", _("C2 server")
    MALWARE_DISTRIBUTION = "malware-distribution", _("Malware distribution")
    MALWARE_CONFIGURATION = "malware-configuration", _("Malware configuration")
    SCANNER = "scanner", _("Scanning")
    SNIFFING = "sniffing", _("Sniffing")
    SOCIAL_ENGINEERING = "social-engineering", _("Social engineering")
    IDS_ALERT = "ids-alert", _("Exploitation of known vulnerabilities")
    BRUTE_FORCE = "brute-force", _("Login attempts")
    EXPLOIT = "exploit", _("New attack signature")
    PRIVILEGED_ACCOUNT_COMPROMISE = "privileged-account-compromise", _("Privileged account compromise")
    UNPRIVILEGED_ACCOUNT_COMPROMISE = "unprivileged-account-compromise", _("Unprivileged account compromise")
    APPLICATION_COMPROMISE = "application-compromise", _("Application compromise")
    SYSTEM_COMPROMISE = "system-compromise", _("System compromise")
    BURGLARY = "burglary", _("Burglary")
    DOS = "dos", _("Denial of service")
    DDOS = "ddos", _("Distributed denial of service")
    OUTAGE = "outage", _("Outage")
    SABOTAGE = "sabotage", _("Sabotage")
    UNAUTHORISED_INFORMATION_ACCESS = (
        "unauthorised-information-access",
        _("Unauthorised access to information"),
    )
    UNAUTHORISED_INFORMATION_MODIFICATION = (
        "unauthorised-information-modification",
        _("Unauthorised modification of information"),
    )
    DATA_LOSS = "data-loss", _("Data loss")
    DATA_LEAK = "data-leak", _("Leak of confidential information")
    UNAUTHORISED_USE_OF_RESOURCES = "unauthorised-use-of-resources", _("Unauthorised use of resources")
    COPYRIGHT = "copyright", _("Copyright")
    MASQUERADE = "masquerade", _("Masquerade")
    PHISHING = "phishing", _("Phishing")
    WEAK_CRYPTO = "weak-crypto", _("Weak cryptography")
    DDOS_AMPLIFIER = "ddos-amplifier", _("DDoS amplifier")
    POTENTIALLY_UNWANTED_ACCESSIBLE = (
        "potentially-unwanted-accessible",
        _("Potentially unwanted accessible services"),
    )
    INFORMATION_DISCLOSURE = "information-disclosure", _("Information disclosure")
    VULNERABLE_SYSTEM = "vulnerable-system", _("Vulnerable system")
    OTHER = "other", _("Uncategorised")
    UNDETERMINED = "undetermined", _("Undetermined")
    TEST = "test", _("Test")
