/* svgplot: small, dependency-free SVG line plots for the examples'
 * evaluations (docs/quality.svg and friends).
 *
 * A figure is a grid of panels. A panel has two axes, each linear or log10,
 * and series of points (x, y, and optionally the standard error of y, drawn
 * as error bars). The SVG scales to its container (viewBox, width 100%);
 * every panel carries its own legend inside its plot area, in the corner
 * that hides the fewest points, or the figure has one legend right of its
 * panels (legend_right). Series with the same label get the same style
 * (colour; past ten labels also a dash pattern and square markers) in every
 * panel of a figure.
 *
 *     svgplot_series s = {"vase", 4, budgets, kl, kl_se};
 *     svgplot_panel p = {.title = "KL", .xlabel = "budget", .ylabel = "nats",
 *                        .logx = 1, .logy = 1, .ymin = NAN, .ymax = NAN,
 *                        .series = &s, .n_series = 1};
 *     svgplot_figure fig = {"Eviction policies", NULL, 2, 0};
 *     svgplot_write(stdout, &fig, &p, 1);
 */
#ifndef SVGPLOT_H
#define SVGPLOT_H

#include <stdio.h>

typedef struct {
    const char *label;  /* legend text */
    int n;              /* points */
    const double *x;    /* n values (> 0 on a log axis) */
    const double *y;    /* n values; NaN: no point */
    const double *yerr; /* NULL, or n standard errors drawn as y +- yerr (NaN or 0: no bar) */
} svgplot_series;

typedef struct {
    const char *title;  /* above the panel */
    const char *xlabel; /* " (log scale)" is appended on a log axis */
    const char *ylabel;
    int logx, logy;     /* log10 axes */
    double ymin, ymax;  /* y range; NaN: fitted to the data and error bars */
    const double *xticks; /* NULL: automatic; else n_xticks tick positions */
    int n_xticks;
    const svgplot_series *series;
    int n_series;
    const char *note;   /* NULL, or one line of text under the panel */
} svgplot_panel;

typedef struct {
    const char *title;    /* NULL, or the figure's title */
    const char *subtitle; /* NULL, or a smaller line under it */
    int columns;          /* panels per row (<= 0: all in one row) */
    int legend_right;     /* 0: a legend inside each panel; 1: one legend for the
                             whole figure, right of the panels (many series) */
} svgplot_figure;

/* Write the figure as one SVG document. Returns 0, or -1 if the stream
 * reports an error or the input is unusable (NULL arrays, n < 0). */
int svgplot_write(FILE *f, const svgplot_figure *fig, const svgplot_panel *panels, int n_panels);

#endif
