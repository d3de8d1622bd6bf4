/* A small SVG writer for accuracy-against-budget figures: one panel per task
 * in a row, a line with 95% error bars per series, a log2 x axis, a dashed
 * reference line per panel and one shared legend. Scalable: the SVG has a
 * viewBox and width 100%. */
#ifndef REASON_PLOT_H
#define REASON_PLOT_H

#define PLOT_MAX_PANELS 8
#define PLOT_MAX_SERIES 32
#define PLOT_MAX_POINTS 16

typedef struct {
    char name[64];
    int n;
    double x[PLOT_MAX_POINTS], y[PLOT_MAX_POINTS], lo[PLOT_MAX_POINTS], hi[PLOT_MAX_POINTS];
} plot_series;

typedef struct {
    char title[64];
    char ref_name[32];
    double ref; /* < 0: none */
    int n;
    plot_series series[PLOT_MAX_SERIES];
} plot_panel;

typedef struct {
    char title[128], xlabel[64], ylabel[64];
    int log_x;
    int n;
    plot_panel panel[PLOT_MAX_PANELS];
} plot_figure;

void plot_figure_init(plot_figure *f, const char *title, const char *xlabel, const char *ylabel, int log_x);
/* NULL when full; later calls on NULL are ignored. */
plot_panel *plot_add_panel(plot_figure *f, const char *title);
void plot_reference(plot_panel *p, const char *name, double y);
plot_series *plot_add_series(plot_panel *p, const char *name);
void plot_point(plot_series *s, double x, double y, double lo, double hi);
/* 0, or -1 when the file cannot be written. */
int plot_write_svg(const plot_figure *f, const char *path);
void plot_figure_free(plot_figure *f);

#endif
