/* svgplot: see svgplot.h. Coordinates are in SVG user units; the document's
 * viewBox is the whole figure, so it scales as one picture. */
#include "svgplot.h"

#include <math.h>
#include <string.h>

enum { PLOT_W = 400, PLOT_H = 260, MARGIN_L = 78, MARGIN_R = 24, MARGIN_T = 34, MARGIN_B = 58, NOTE_H = 20 };
enum { MAX_LABELS = 64 };

/* Distinguishable on white and for the common colour-vision deficiencies
 * first (blue, orange, green, vermilion, purple), then the rest. */
static const char *const palette[] = {"#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7",
                                      "#56b4e9", "#8b5a2b", "#000000", "#999999", "#f0e442"};

/* Style of label i: a colour, then past ten labels a dash pattern and square markers. */
static const char *colour(int i) { return palette[i % 10]; }
static const char *dash(int i) { return i / 10 % 3 == 1 ? " stroke-dasharray=\"7,3\"" : i / 10 % 3 == 2 ? " stroke-dasharray=\"2,2\"" : ""; }
static void marker(FILE *f, int i, double x, double y) {
    if (i / 10 % 2)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"6.4\" height=\"6.4\" fill=\"%s\"/>\n", x - 3.2, y - 3.2, colour(i));
    else
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>\n", x, y, colour(i));
}

static void text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

typedef struct {
    double x0, y0;       /* top-left of the plot area */
    double xmin, xmax;   /* axis range, in axis units (log10 on a log axis) */
    double ymin, ymax;
    int logx, logy;
} frame;

static double ax(int logv, double v) { return logv ? log10(v) : v; }
static double fx(const frame *r, double x) {
    double t = r->xmax > r->xmin ? (ax(r->logx, x) - r->xmin) / (r->xmax - r->xmin) : 0.5;
    return r->x0 + t * PLOT_W;
}
static double fy(const frame *r, double y) {
    double t = r->ymax > r->ymin ? (ax(r->logy, y) - r->ymin) / (r->ymax - r->ymin) : 0.5;
    return r->y0 + PLOT_H - t * PLOT_H;
}
static int usable(int logv, double v) { return isfinite(v) && (!logv || v > 0); }

/* Nice tick step (1, 2 or 5 x 10^k) giving about `want` intervals over `span`. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* Range of one axis over the panel's data (and error bars for y), padded to ticks. */
static void fit(const svgplot_panel *p, int is_y, double *lo, double *hi) {
    int logv = is_y ? p->logy : p->logx;
    double mn = INFINITY, mx = -INFINITY;
    for (int s = 0; s < p->n_series; s++) {
        const svgplot_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!usable(p->logx, x) || !usable(p->logy, y)) continue;
            double e = is_y && se->yerr && isfinite(se->yerr[i]) ? se->yerr[i] : 0;
            double a = is_y ? y - e : x, b = is_y ? y + e : x;
            if (logv && !(a > 0)) a = is_y ? y : x; /* a bar below 0 on a log axis: clipped, not fitted */
            if (usable(logv, a) && ax(logv, a) < mn) mn = ax(logv, a);
            if (usable(logv, b) && ax(logv, b) > mx) mx = ax(logv, b);
        }
    }
    if (!is_y)
        for (int i = 0; i < p->n_xticks; i++)
            if (usable(logv, p->xticks[i])) {
                double t = ax(logv, p->xticks[i]);
                mn = t < mn ? t : mn;
                mx = t > mx ? t : mx;
            }
    if (!(mn <= mx)) mn = 0, mx = 1;
    if (mx - mn < 1e-12) { /* one value: a range around it */
        double d = logv ? 0.5 : fabs(mn) > 0 ? fabs(mn) * 0.1 : 0.5;
        mn -= d;
        mx += d;
    }
    if (is_y) { /* pad to the enclosing ticks: on log axes 1-2-5 steps, on linear ones the tick step */
        if (logv) {
            static const double m[] = {1, 2, 5, 10};
            double e = floor(mn), best = e;
            for (int i = 0; i < 4; i++)
                if (e + log10(m[i]) <= mn + 1e-12) best = e + log10(m[i]);
            mn = best;
            e = floor(mx), best = e + 1;
            for (int i = 3; i >= 0; i--)
                if (e + log10(m[i]) >= mx - 1e-12) best = e + log10(m[i]);
            mx = best;
        } else {
            double st = nice_step(mx - mn, 5);
            mn = floor(mn / st + 1e-9) * st;
            mx = ceil(mx / st - 1e-9) * st;
        }
    }
    *lo = mn;
    *hi = mx;
}

static void hline(FILE *f, const frame *r, double y) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", r->x0, y,
            r->x0 + PLOT_W, y);
}
static void vline(FILE *f, const frame *r, double x) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x, r->y0, x,
            r->y0 + PLOT_H);
}

static void y_ticks(FILE *f, const frame *r) {
    if (r->logy) {
        int decades = (int)ceil(r->ymax - r->ymin - 1e-9);
        for (int e = (int)floor(r->ymin); e <= (int)ceil(r->ymax); e++)
            for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) { /* 1, 2, 5: only 1 when the range is wide */
                if (m > 1 && decades > 3) continue;
                double v = m * pow(10, e), t = log10(v);
                if (t < r->ymin - 1e-9 || t > r->ymax + 1e-9) continue;
                hline(f, r, fy(r, v));
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%g</text>\n",
                        r->x0 - 6, fy(r, v) + 4, v);
            }
        return;
    }
    double st = nice_step(r->ymax - r->ymin, 5);
    int digits = st >= 1 ? 0 : (int)ceil(-log10(st) - 1e-9);
    for (double v = ceil(r->ymin / st - 1e-9) * st; v <= r->ymax + st * 1e-6; v += st) {
        hline(f, r, fy(r, v));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%.*f</text>\n", r->x0 - 6,
                fy(r, v) + 4, digits, fabs(v) < st * 1e-6 ? 0.0 : v);
    }
}

static void x_ticks(FILE *f, const frame *r, const svgplot_panel *p) {
    if (p->xticks && p->n_xticks > 0) {
        for (int i = 0; i < p->n_xticks; i++) {
            double v = p->xticks[i];
            if (!usable(r->logx, v)) continue;
            vline(f, r, fx(r, v));
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%g</text>\n", fx(r, v),
                    r->y0 + PLOT_H + 16, v);
        }
        return;
    }
    if (r->logx) {
        for (int e = (int)floor(r->xmin); e <= (int)ceil(r->xmax); e++) {
            double v = pow(10, e);
            if (e < r->xmin - 1e-9 || e > r->xmax + 1e-9) continue;
            vline(f, r, fx(r, v));
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%g</text>\n", fx(r, v),
                    r->y0 + PLOT_H + 16, v);
        }
        return;
    }
    double st = nice_step(r->xmax - r->xmin, 5);
    for (double v = ceil(r->xmin / st - 1e-9) * st; v <= r->xmax + st * 1e-6; v += st) {
        vline(f, r, fx(r, v));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%g</text>\n", fx(r, v),
                r->y0 + PLOT_H + 16, fabs(v) < st * 1e-6 ? 0.0 : v);
    }
}

/* Colour index of a label: the order of first appearance in the figure. */
static int colour_of(const char **labels, int *n, const char *label) {
    for (int i = 0; i < *n; i++)
        if (strcmp(labels[i], label) == 0) return i;
    if (*n < MAX_LABELS) labels[(*n)++] = label;
    return *n - 1;
}

/* Legend box: the corner of the plot area that covers the fewest points. */
static void legend(FILE *f, const frame *r, const svgplot_panel *p, const char **labels, int *nl) {
    size_t longest = 0;
    for (int s = 0; s < p->n_series; s++)
        if (p->series[s].label && strlen(p->series[s].label) > longest) longest = strlen(p->series[s].label);
    double w = 34 + 6.8 * (double)longest, h = 8 + 17.0 * p->n_series;
    if (w > PLOT_W) w = PLOT_W;
    int best = 0;
    long best_hits = -1;
    for (int corner = 0; corner < 4; corner++) { /* top-right, top-left, bottom-right, bottom-left */
        double bx = corner % 2 ? r->x0 + 6 : r->x0 + PLOT_W - w - 6, by = corner < 2 ? r->y0 + 6 : r->y0 + PLOT_H - h - 6;
        long hits = 0;
        for (int s = 0; s < p->n_series; s++)
            for (int i = 0; i < p->series[s].n; i++) {
                double x = p->series[s].x[i], y = p->series[s].y[i];
                if (!usable(r->logx, x) || !usable(r->logy, y)) continue;
                double X = fx(r, x), Y = fy(r, y);
                hits += X >= bx - 4 && X <= bx + w + 4 && Y >= by - 4 && Y <= by + h + 4;
            }
        if (best_hits < 0 || hits < best_hits) best = corner, best_hits = hits;
    }
    double bx = best % 2 ? r->x0 + 6 : r->x0 + PLOT_W - w - 6, by = best < 2 ? r->y0 + 6 : r->y0 + PLOT_H - h - 6;
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" fill-opacity=\"0.88\" "
            "stroke=\"#bbb\"/>\n",
            bx, by, w, h);
    for (int s = 0; s < p->n_series; s++) {
        const char *lab = p->series[s].label ? p->series[s].label : "";
        double y = by + 13 + 17.0 * s;
        int st = colour_of(labels, nl, lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>\n",
                bx + 6, y - 4, bx + 26, y - 4, colour(st), dash(st));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", bx + 30, y);
        text(f, lab);
        fprintf(f, "</text>\n");
    }
}

static void draw_panel(FILE *f, const svgplot_panel *p, int id, double cx, double cy, const char **labels, int *nl,
                       int own_legend) {
    frame r = {cx + MARGIN_L, cy + MARGIN_T, 0, 0, 0, 0, p->logx, p->logy};
    fit(p, 0, &r.xmin, &r.xmax);
    fit(p, 1, &r.ymin, &r.ymax);
    if (!isnan(p->ymin)) r.ymin = ax(p->logy, p->ymin);
    if (!isnan(p->ymax)) r.ymax = ax(p->logy, p->ymax);
    /* a little room left and right of the first and last x */
    double pad = (r.xmax - r.xmin) * 0.04;
    r.xmin -= pad, r.xmax += pad;

    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">",
            r.x0 + PLOT_W / 2.0, r.y0 - 12);
    text(f, p->title);
    fprintf(f, "</text>\n");
    y_ticks(f, &r);
    x_ticks(f, &r, p);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", r.x0, r.y0,
            PLOT_W, PLOT_H);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">", r.x0 + PLOT_W / 2.0,
            r.y0 + PLOT_H + 36);
    text(f, p->xlabel);
    if (p->logx) fputs(" (log scale)", f);
    fprintf(f, "</text>\n");
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">",
            r.x0 - 56, r.y0 + PLOT_H / 2.0);
    text(f, p->ylabel);
    if (p->logy) fputs(" (log scale)", f);
    fprintf(f, "</text>\n");
    if (p->note) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" fill=\"#555\">",
                r.x0 + PLOT_W / 2.0, r.y0 + PLOT_H + 56);
        text(f, p->note);
        fprintf(f, "</text>\n");
    }

    /* series, clipped to the plot area */
    fprintf(f, "<clipPath id=\"plot%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\"/></clipPath>\n", id,
            r.x0, r.y0, PLOT_W, PLOT_H);
    fprintf(f, "<g clip-path=\"url(#plot%d)\">\n", id);
    for (int s = 0; s < p->n_series; s++) {
        const svgplot_series *se = &p->series[s];
        int sty = colour_of(labels, nl, se->label ? se->label : "");
        const char *col = colour(sty);
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col, dash(sty));
        for (int i = 0; i < se->n; i++)
            if (usable(r.logx, se->x[i]) && usable(r.logy, se->y[i]))
                fprintf(f, "%.1f,%.1f ", fx(&r, se->x[i]), fy(&r, se->y[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!usable(r.logx, x) || !usable(r.logy, y)) continue;
            double X = fx(&r, x), e = se->yerr ? se->yerr[i] : NAN;
            if (isfinite(e) && e > 0) {
                double lo = y - e, hi = y + e;
                double Y0 = r.logy && !(lo > 0) ? r.y0 + PLOT_H : fy(&r, lo), Y1 = fy(&r, hi);
                fprintf(f,
                        "<path class=\"errbar\" d=\"M%.1f,%.1fV%.1fM%.1f,%.1fH%.1fM%.1f,%.1fH%.1f\" stroke=\"%s\" "
                        "stroke-width=\"1.3\" fill=\"none\"/>\n",
                        X, Y0, Y1, X - 4, Y0, X + 4, X - 4, Y1, X + 4, col);
            }
            marker(f, sty, X, fy(&r, y));
        }
    }
    fprintf(f, "</g>\n");
    if (own_legend) legend(f, &r, p, labels, nl);
}

/* One legend for the figure: every label in style order, in a column at x. */
static void figure_legend(FILE *f, double x, double y, double w, const char **labels, int nl) {
    double h = 8 + 17.0 * nl;
    fprintf(f, "<rect class=\"legend\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" stroke=\"#bbb\"/>\n",
            x, y, w, h);
    for (int i = 0; i < nl; i++) {
        double ly = y + 13 + 17.0 * i;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>\n",
                x + 6, ly - 4, x + 26, ly - 4, colour(i), dash(i));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 30, ly);
        text(f, labels[i]);
        fprintf(f, "</text>\n");
    }
}

int svgplot_write(FILE *f, const svgplot_figure *fig, const svgplot_panel *panels, int n_panels) {
    if (!f || !fig || (n_panels > 0 && !panels) || n_panels < 0) return -1;
    for (int k = 0; k < n_panels; k++) {
        if (panels[k].n_series < 0 || (panels[k].n_series && !panels[k].series)) return -1;
        if (panels[k].n_xticks < 0 || (panels[k].n_xticks && !panels[k].xticks)) return -1;
        for (int s = 0; s < panels[k].n_series; s++) {
            const svgplot_series *se = &panels[k].series[s];
            if (se->n < 0 || (se->n && (!se->x || !se->y))) return -1;
        }
    }
    int cols = fig->columns > 0 && fig->columns < n_panels ? fig->columns : (n_panels > 0 ? n_panels : 1);
    int rows = (n_panels + cols - 1) / cols;
    int note = 0;
    for (int k = 0; k < n_panels; k++) note |= panels[k].note != NULL;
    double cell_w = MARGIN_L + PLOT_W + MARGIN_R, cell_h = MARGIN_T + PLOT_H + MARGIN_B + (note ? NOTE_H : 0);
    double head = (fig->title ? 30 : 8) + (fig->subtitle ? 18 : 0);
    /* the figure legend's labels: every series label, in the order styles are given */
    const char *labels[MAX_LABELS];
    int nl = 0;
    size_t longest = 0;
    for (int k = 0; k < n_panels; k++)
        for (int s = 0; s < panels[k].n_series; s++) {
            const char *lab = panels[k].series[s].label ? panels[k].series[s].label : "";
            colour_of(labels, &nl, lab);
            if (strlen(lab) > longest) longest = strlen(lab);
        }
    double leg_w = fig->legend_right ? 40 + 6.8 * (double)longest : 0;
    double W = cols * cell_w + 10 + (fig->legend_right ? leg_w + 10 : 0), H = head + rows * cell_h + 6;
    if (fig->legend_right && H < head + MARGIN_T + 8 + 17.0 * nl + 10) H = head + MARGIN_T + 8 + 17.0 * nl + 10;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" "
            "font-family=\"Helvetica, Arial, sans-serif\">\n",
            W, H);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    if (fig->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">", W / 2);
        text(f, fig->title);
        fprintf(f, "</text>\n");
    }
    if (fig->subtitle) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" font-size=\"13\" fill=\"#444\">", W / 2,
                fig->title ? 42.0 : 20.0);
        text(f, fig->subtitle);
        fprintf(f, "</text>\n");
    }
    for (int k = 0; k < n_panels; k++)
        draw_panel(f, &panels[k], k, 5 + (k % cols) * cell_w, head + (double)(k / cols) * cell_h, labels, &nl,
                   !fig->legend_right);
    if (fig->legend_right) figure_legend(f, 5 + cols * cell_w + 5, head + MARGIN_T, leg_w, labels, nl);
    fprintf(f, "</svg>\n");
    return ferror(f) ? -1 : 0;
}
