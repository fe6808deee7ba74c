"""For users coming from upstream flowtask: what a folder of its task files needs here, and
where flowtaskd's DAG would run an upstream-style file out of its file order.

:func:`needed_components` names the steps' components that flowtaskd does not have and
says whether upstream ships them (then a plugin can provide them) or they are unknown to
both (a typo, or a plugin of the user's own). :func:`order_notes` finds, in a file that
uses none of flowtaskd's own keys, the steps that can start before a step written above
them (upstream runs strictly in file order; ``order: file`` does so here). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from flowtaskd.core.options import RunOrder
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.upstream import NEXT_TASK

__all__ = ["UPSTREAM_COMPONENTS", "is_upstream_style", "needed_components", "order_notes"]

UPSTREAM_COMPONENTS: frozenset[str] = frozenset(
    [
        "ASPX",
        "ATT",
        "AddDataset",
        "Amazon",
        "AutoTask",
        "Azure",
        "AzureUsers",
        "BestBuy",
        "CSVToGCS",
        "CallAnalysis",
        "CallSummary",
        "CensusData",
        "CensusVariables",
        "CompanyScraper",
        "CopyFromS3",
        "CopyFromSharepoint",
        "CopyTo",
        "CopyToBigQuery",
        "CopyToMongoDB",
        "CopyToPg",
        "CopyToRethink",
        "CopyToS3",
        "CopyToSharepoint",
        "Costco",
        "CreateGCSBucket",
        "CreateReport",
        "CustomerSatisfaction",
        "DataInput",
        "DateList",
        "DbClient",
        "DialPad",
        "DispatchMe",
        "DocumentDBQuery",
        "DownloadFrom",
        "DownloadFromD2L",
        "DownloadFromFTP",
        "DownloadFromGamma",
        "DownloadFromGoogleDrive",
        "DownloadFromIMAP",
        "DownloadFromS3",
        "DownloadFromSFTP",
        "DownloadFromSharepoint",
        "DownloadFromSmartSheet",
        "DownloadS3File",
        "Dummy",
        "DuplicatePhoto",
        "EmployeeEvaluation",
        "ExecuteSQL",
        "ExtractHTML",
        "ExtractTranscript",
        "FileCopy",
        "FileDelete",
        "FileExists",
        "FileIteratorDelete",
        "FileList",
        "FileOpen",
        "FileRead",
        "FileRename",
        "FilterIf",
        "FilterRows",
        "GCSToBigQuery",
        "GenData",
        "GoogleA4",
        "GoogleGeoCoding",
        "GooglePlaces",
        "GoogleSearch",
        "HTTPClient",
        "ICIMS",
        "IF",
        "IcimsFolderCopy",
        "ImageFeatures",
        "LeadIQ",
        "Loop",
        "Lowes",
        "MS365Usage",
        "MSTeamsMessages",
        "MarkdownMaker",
        "MarketClustering",
        "MergeFileList",
        "MergeFiles",
        "MilvusOutput",
        "NearByStores",
        "NetworkNinja",
        "NetworkNinjaClaims",
        "NextStopAgent",
        "NextTask",
        "Odoo",
        "OdooInjector",
        "OpenFromXML",
        "OpenStreetMap",
        "OpenWeather",
        "OpenWithPandas",
        "PDFGenerator",
        "PGPDecrypt",
        "PandasIterator",
        "PandasToFile",
        "PandasToPowerPoint",
        "Paradox",
        "ParamIterator",
        "ParrotAgent",
        "ParrotKnowledgeBuilder",
        "ParrotLoader",
        "ParseHTML",
        "PgVectorOutput",
        "PlacerStores",
        "PlanogramCompliance",
        "PodcastMaker",
        "Pokemon",
        "PositiveBot",
        "PowerPointSlide",
        "PrintMessage",
        "ProductCompetitors",
        "ProductCompliant",
        "ProductInfo",
        "ProductPricing",
        "ProductReportBot",
        "QS",
        "QueryIterator",
        "QueryToInsert",
        "QueryToPandas",
        "RESTClient",
        "RethinkDBQuery",
        "Rsync",
        "RunSSH",
        "RunShell",
        "SAPExtraction",
        "SMSAnalysis",
        "SMSSummary",
        "SalesForce",
        "Sassie",
        "SaveImageBank",
        "SchedulingVisits",
        "ScrapPage",
        "ScrapSearch",
        "ScrapTool",
        "SearchQuery",
        "SendEmail",
        "SendNotify",
        "SentimentAnalysis",
        "ServiceScraperStores",
        "ServiceScrapper",
        "SetVariables",
        "SplitPDF",
        "Staples",
        "SubTask",
        "SuiteCRM",
        "SweetSpotScore",
        "Switch",
        "TableDelete",
        "TableInput",
        "TableOutput",
        "TableSchema",
        "Target",
        "ThumbnailGenerator",
        "ToPandas",
        "TransformRows",
        "TransposeRows",
        "UPCDatabase",
        "UnGzip",
        "Uncompress",
        "UniqueRows",
        "Unzip",
        "UpdateOperationalVars",
        "UploadTo",
        "UploadToS3",
        "UploadToSFTP",
        "UploadToSharepoint",
        "UserFunc",
        "VideoUnderstanding",
        "VivaTracker",
        "WSDLClient",
        "Wait",
        "Walmart",
        "Workday",
        "WorkdayReport",
        "Workplace",
        "XMLToPandas",
        "Zammad",
        "Zoom",
        "ZoomInfoScraper",
        "ZoomUs",
        "tAddTotalRow",
        "tAutoincrement",
        "tConcat",
        "tConditionalMultiply",
        "tCrosstab",
        "tDictKey",
        "tDiff",
        "tExplode",
        "tFilter",
        "tFilterCommonValues",
        "tFlatten",
        "tFrequencyWeights",
        "tGroup",
        "tJoin",
        "tMap",
        "tMelt",
        "tMerge",
        "tOrder",
        "tPandas",
        "tPivot",
        "tPluckCols",
        "tUnnest",
    ]
)
"""The components upstream flowtask 5.13.8 ships (its ``flowtask/components`` package)."""

_OURS_TASK = frozenset(
    {"schedule", "params", "env", "secrets", "timeout", "retry", "max_active_runs", "overlap"}
    | {"max_active_steps", "order", "placeholders"}
)
_OURS_STEP = frozenset(
    {"trigger_rule", "retry", "timeout", "precondition", "env", "cwd", "executor", "resources"}
)
_OURS_COMPONENTS = frozenset({"Command", "Python", "RunTask", "FileMove"})


def needed_components(data: Any, known: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """``(upstream components not shipped here, names unknown to both)`` of a file's steps."""
    missing: list[str] = []
    unknown: list[str] = []
    steps = data.get("steps") if isinstance(data, dict) else None
    for item in steps if isinstance(steps, list) else []:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (name,) = item
        name = str(name)
        if name in known or name == NEXT_TASK:
            continue
        bucket = missing if name in UPSTREAM_COMPONENTS else unknown
        if name not in bucket:
            bucket.append(name)
    return missing, unknown


def is_upstream_style(data: Any) -> bool:
    """A file that uses none of flowtaskd's own keys or components."""
    if not isinstance(data, dict) or _OURS_TASK & set(data):
        return False
    for item in data.get("steps") or []:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((name, params),) = item.items()
        if name in _OURS_COMPONENTS or (isinstance(params, dict) and _OURS_STEP & set(params)):
            return False
    return True


def order_notes(pile: TaskPile) -> list[tuple[str, int | None, str]]:
    """``(step id, line, note)`` for each step of an upstream-style file (``order: dag``)
    that can start before a step written above it."""
    d = pile.definition
    if d.header.order is RunOrder.FILE or not is_upstream_style(d.raw):
        return []
    notes = []
    seen: list[str] = []
    graph = pile.graph
    for step in pile:
        before = nx.ancestors(graph, step.id)
        group = pile.group_of(step.id)
        ahead = [
            s for s in seen if s not in before and not (group is not None and s in group.members)
        ]
        if ahead:
            names = ", ".join(f"`{s}`" for s in ahead)
            notes.append(
                (
                    step.id,
                    step.spec.line if step.spec is not None else None,
                    f"note: `{step.id}` can start before {names}, written above it, as "
                    "`depends` allows; upstream runs steps in file order: add `order: file` "
                    "to do the same",
                )
            )
        seen.append(step.id)
    return notes
