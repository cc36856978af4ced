"""Result tables ready for the templates: confusion matrices as a table heat-map (no
plotting library), numeric columns marked for right alignment. The tables themselves are
checked and stored by app.tracking.results."""


HEAT_RGB = (47, 91, 211)  # the shading of a cell: the accent colour, blended onto white (includes/result_tables.html)


def relative_luminance(rgb) -> float:
    """WCAG 2's relative luminance of an sRGB colour (0-255 channels)."""
    def linear(channel):
        channel /= 255
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4
    red, green, blue = map(linear, rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def white_text_reads(alpha: float) -> bool:
    """Whether white text on a cell shaded `alpha` has WCAG AA's 4.5:1. Where it has not,
    the text is black (site.css), which has it on every such cell: between the two there is
    no shade where neither reads, as there would be with the page's dark grey ink."""
    shade = [255 + (channel - 255) * alpha for channel in HEAT_RGB]
    return 1.05 / (relative_luminance(shade) + 0.05) >= 4.5


def heatmap(data: dict) -> dict:
    """The confusion matrix ready for the template: each cell with its count, its share of
    its true class, and a background strength from that share; per-class recall."""
    rows = []
    for label, counts in zip(data["labels"], data["matrix"]):
        total = sum(counts)
        cells = []
        for count in counts:
            share = count / total if total else 0.0
            alpha = round(0.08 + 0.82 * share, 2) if count else 0.0
            cells.append({"count": count, "share": share, "alpha": f"{alpha:.2f}" if count else "0",
                          "dark": white_text_reads(alpha)})
        rows.append({"label": label, "cells": cells, "total": total})
    diagonal = sum(data["matrix"][i][i] for i in range(len(data["labels"])))
    everything = sum(map(sum, data["matrix"]))
    for i, row in enumerate(rows):
        row["recall"] = row["cells"][i]["share"] if row["total"] else None
    return {"labels": data["labels"], "rows": rows, "accuracy": diagonal / everything if everything else None}


def with_heatmaps(tables) -> list:
    """Result table rows as a list, each confusion matrix given its heat-map as `.heat`."""
    tables = list(tables)
    for table in tables:
        if table.kind == "confusion":
            table.heat = heatmap(table.data)
        else:
            # A column of numbers (blanks aside) is right-aligned, header included.
            rows = table.data["rows"]
            numeric = [
                any(row[j] is not None for row in rows) and all(row[j] is None or is_number(row[j]) for row in rows)
                for j in range(len(table.data["columns"]))
            ]
            table.headers = [{"name": name, "number": n} for name, n in zip(table.data["columns"], numeric)]
            table.cells = [[{"value": v, "number": n} for v, n in zip(row, numeric)] for row in rows]
    return tables


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
