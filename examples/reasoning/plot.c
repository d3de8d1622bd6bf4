/* SVG accuracy figures; see plot.h. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Colour-blind-safe palette (Okabe-Ito), then darker variants. */
static const char *const colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                                      "#000000", "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD",
                                      "#1F3A93", "#A0522D", "#2E8B57", "#B03060"};
#define N_COLOURS (sizeof colours / sizeof colours[0])
static const char *const dashes[] = {"", "6,3", "2,2"};

static void copy(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src ? src : ""); }

void plot_figure_init(plot_figure *f, const char *title, const char *xlabel, const char *ylabel, int log_x) {
    memset(f, 0, sizeof *f);
    copy(f->title, sizeof f->title, title);
    copy(f->xlabel, sizeof f->xlabel, xlabel);
    copy(f->ylabel, sizeof f->ylabel, ylabel);
    f->log_x = log_x;
}

plot_panel *plot_add_panel(plot_figure *f, const char *title) {
    if (f->n == PLOT_MAX_PANELS) return NULL;
    plot_panel *p = &f->panel[f->n++];
    copy(p->title, sizeof p->title, title);
    p->ref = -1;
    return p;
}

void plot_reference(plot_panel *p, const char *name, double y) {
    if (!p) return;
    copy(p->ref_name, sizeof p->ref_name, name);
    p->ref = y;
}

plot_series *plot_add_series(plot_panel *p, const char *name) {
    if (!p || p->n == PLOT_MAX_SERIES) return NULL;
    plot_series *s = &p->series[p->n++];
    copy(s->name, sizeof s->name, name);
    return s;
}

void plot_point(plot_series *s, double x, double y, double lo, double hi) {
    if (!s || s->n == PLOT_MAX_POINTS) return;
    s->x[s->n] = x, s->y[s->n] = y, s->lo[s->n] = lo, s->hi[s->n] = hi;
    s->n++;
}

static void escaped(FILE *o, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else if (*s == '&') fputs("&amp;", o);
        else if (*s == '"') fputs("&quot;", o);
        else fputc(*s, o);
    }
}

int plot_write_svg(const plot_figure *f, const char *path) {
    FILE *o = fopen(path, "w");
    if (!o) return -1;
    /* x range over all points */
    double xmin = INFINITY, xmax = -INFINITY;
    int n_series = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->panel[i].n > n_series) n_series = f->panel[i].n;
        for (int j = 0; j < f->panel[i].n; j++)
            for (int k = 0; k < f->panel[i].series[j].n; k++) {
                double x = f->panel[i].series[j].x[k];
                if (x < xmin) xmin = x;
                if (x > xmax) xmax = x;
            }
    }
    if (!(xmin <= xmax)) xmin = 1, xmax = 2;
    if (xmin == xmax) xmax = xmin * 2;
    const double pw = 260, ph = 220, left = 60, gap = 30, top = 50, legend_w = 170;
    const double W = left + f->n * pw + (f->n - 1) * gap + 20 + legend_w, H = top + ph + 70;
    double lx0 = f->log_x ? log2(xmin) : xmin, lx1 = f->log_x ? log2(xmax) : xmax;
    double pad = (lx1 - lx0) * 0.06;
    lx0 -= pad, lx1 += pad;
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(o, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"22\" "
               "font-size=\"15\" font-weight=\"bold\">", left);
    escaped(o, f->title);
    fprintf(o, "</text>\n");
    for (int i = 0; i < f->n; i++) {
        const plot_panel *p = &f->panel[i];
        double x0 = left + i * (pw + gap), y0 = top;
#define PX(x) (x0 + ((f->log_x ? log2(x) : (x)) - lx0) / (lx1 - lx0) * pw)
#define PY(y) (y0 + ph - (y) * ph)
        fprintf(o, "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#999\"/>\n",
                x0, y0, pw, ph);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-weight=\"bold\">", x0 + pw / 2, y0 - 8);
        escaped(o, p->title);
        fprintf(o, "</text>\n");
        for (int t = 0; t <= 4; t++) {
            double y = t / 4.0;
            fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x0, x0 + pw, PY(y),
                    PY(y));
            if (i == 0)
                fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", x0 - 5, PY(y) + 4, y);
        }
        /* x ticks at the data's x values (budgets) */
        const plot_series *s0 = p->n ? &p->series[0] : NULL;
        for (int k = 0; s0 && k < s0->n; k++)
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(s0->x[k]), y0 + ph + 16,
                    s0->x[k]);
        if (p->ref >= 0) {
            fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" stroke-dasharray=\"8,4\"/>\n",
                    x0, x0 + pw, PY(p->ref), PY(p->ref));
        }
        for (int j = 0; j < p->n; j++) {
            const plot_series *s = &p->series[j];
            const char *col = colours[j % N_COLOURS], *dash = dashes[(j / N_COLOURS) % 3];
            fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s%s%s points=\"", col,
                    *dash ? " stroke-dasharray=\"" : "", dash, *dash ? "\"" : "");
            for (int k = 0; k < s->n; k++) fprintf(o, "%.1f,%.1f ", PX(s->x[k]), PY(s->y[k]));
            fprintf(o, "\"/>\n");
            for (int k = 0; k < s->n; k++) {
                double cx = PX(s->x[k]) + (j - p->n / 2.0) * 0.8; /* a small offset keeps bars apart */
                fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", cx, cx,
                        PY(s->lo[k]), PY(s->hi[k]), col);
                fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", PX(s->x[k]), PY(s->y[k]), col);
            }
        }
        fprintf(o, "</g>\n");
#undef PX
#undef PY
    }
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", left + (W - left - legend_w - 20) / 2,
            top + ph + 40);
    escaped(o, f->xlabel);
    fprintf(o, "</text>\n<text transform=\"translate(16,%.1f) rotate(-90)\" text-anchor=\"middle\">", top + ph / 2);
    escaped(o, f->ylabel);
    fprintf(o, "</text>\n");
    /* legend: the first panel's series names (every panel has the same) */
    double lx = W - legend_w, ly = top;
    fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" stroke-dasharray=\"8,4\"/>"
               "<text x=\"%.1f\" y=\"%.1f\">full cache</text>\n", lx, lx + 22, ly, ly, lx + 28, ly + 4);
    for (int j = 0; f->n && j < f->panel[0].n; j++) {
        double y = ly + 16 * (j + 1);
        const char *col = colours[j % N_COLOURS], *dash = dashes[(j / N_COLOURS) % 3];
        fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>",
                lx, lx + 22, y, y, col, *dash ? " stroke-dasharray=\"" : "", dash, *dash ? "\"" : "");
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\">", lx + 28, y + 4);
        escaped(o, f->panel[0].series[j].name);
        fprintf(o, "</text>\n");
    }
    fprintf(o, "</svg>\n");
    (void)n_series;
    return fclose(o) ? -1 : 0;
}

void plot_figure_free(plot_figure *f) { memset(f, 0, sizeof *f); }
