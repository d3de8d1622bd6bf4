/* Checks of svgplot (run by tests/parts/svgplot.sh): the document scales
 * (viewBox, width 100%), log axes are labelled, error bars are drawn exactly
 * where a standard error is given, each legend lies inside its plot area,
 * text is escaped, and bad input is refused. Prints one line per failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svgplot.h"

static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

static char *render(const svgplot_figure *fig, const svgplot_panel *p, int n, int *rc) {
    FILE *f = tmpfile();
    if (!f) return NULL;
    *rc = svgplot_write(f, fig, p, n);
    long len = ftell(f);
    rewind(f);
    char *buf = calloc((size_t)len + 1, 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) buf[0] = 0;
    fclose(f);
    return buf;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

int main(void) {
    const double x[4] = {32, 64, 128, 256};
    const double a[4] = {0.10, 0.04, 0.009, 0.0005}, ae[4] = {0.006, 0.002, NAN, 0.0001};
    const double b[4] = {0.16, 0.08, 0.04, 0.02}, be[4] = {0.2, 0.005, 0.004, 0.004}; /* 0.16 - 0.2 < 0: clipped */
    const double c[4] = {0.86, 0.92, 0.97, 0.99};
    svgplot_series kl[2] = {{"vase", 4, x, a, ae}, {"a<b & \"c\"", 4, x, b, be}};
    svgplot_series t1[2] = {{"vase", 4, x, c, NULL}, {"a<b & \"c\"", 4, x, c, NULL}};
    svgplot_panel p[2] = {
        {"KL", "budget", "nats", 1, 1, NAN, NAN, x, 4, kl, 2, "a note"},
        {"top-1", "budget", "agreement", 1, 0, NAN, NAN, NULL, 0, t1, 2, NULL},
    };
    svgplot_figure fig = {"Title", "subtitle", 2, 0};
    int rc = -2;
    char *s = render(&fig, p, 2, &rc);
    if (!s) {
        printf("FAIL: no output\n");
        return 1;
    }
    check(rc == 0, "svgplot_write returns 0");
    check(strncmp(s, "<svg ", 5) == 0 && strstr(s, "</svg>\n") != NULL, "one <svg> document");
    check(strstr(s, "viewBox=\"0 0 ") != NULL && strstr(s, "width=\"100%\"") != NULL, "viewBox and width 100%");
    double W = 0, H = 0;
    check(sscanf(strstr(s, "viewBox=\"") + 9, "0 0 %lf %lf", &W, &H) == 2 && W > 0 && H > 0, "viewBox size");
    /* 3 KL bars of vase (one NaN), 4 of the other; none in the panel without errors */
    check(count(s, "class=\"errbar\"") == 7, "one error bar per finite standard error");
    /* x log on both panels, y log on the first */
    check(count(s, "budget (log scale)") == 2 && count(s, "nats (log scale)") == 1 && count(s, "agreement (log") == 0,
          "log axes say so, linear ones do not");
    check(strstr(s, "a&lt;b &amp; &quot;c&quot;") != NULL && strstr(s, "a<b") == NULL, "text is escaped");
    check(strstr(s, ">a note<") != NULL, "panel note");
    check(count(s, "<polyline") == 4 && count(s, "<clipPath") == 2, "a line per series, clipped per panel");
    /* the same label has the same colour in both panels */
    const char *p1 = strstr(s, "<polyline fill=\"none\" stroke=\""), *p2 = strstr(p1 + 1, "<polyline fill=\"none\" stroke=\"");
    p2 = strstr(p2 + 1, "<polyline fill=\"none\" stroke=\"");
    check(p1 && p2 && strncmp(p1, p2, 40) == 0, "one colour per label across panels");
    /* every legend box inside its panel's plot area (the rect drawn just before it) */
    int legends = 0;
    for (const char *q = strstr(s, "fill-opacity"); q; q = strstr(q + 1, "fill-opacity")) {
        const char *r = q;
        while (r > s && strncmp(r, "<rect", 5)) r--;
        double lx, ly, lw, lh;
        if (sscanf(r, "<rect x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &lx, &ly, &lw, &lh) != 4) break;
        const char *fr = NULL;
        for (const char *t = strstr(s, "stroke=\"#444\""); t && t < r; t = strstr(t + 1, "stroke=\"#444\"")) fr = t;
        while (fr && fr > s && strncmp(fr, "<rect", 5)) fr--;
        double fx, fy, fw, fh;
        if (fr && sscanf(fr, "<rect x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &fx, &fy, &fw, &fh) == 4)
            legends += lx >= fx && ly >= fy && lx + lw <= fx + fw && ly + lh <= fy + fh && lx + lw <= W && ly + lh <= H;
    }
    check(legends == 2, "each legend inside its plot area");
    free(s);

    /* many series, one legend right of the panels: every label once, nothing over a plot area */
    {
        static char names[12][8];
        static double ys[12][4];
        svgplot_series many[12];
        for (int i = 0; i < 12; i++) {
            snprintf(names[i], sizeof names[i], "pol%02d", i);
            for (int j = 0; j < 4; j++) ys[i][j] = 0.01 * (i + 1) / (j + 1);
            many[i] = (svgplot_series){names[i], 4, x, ys[i], NULL};
        }
        svgplot_panel mp[2] = {{"a", "x", "y", 1, 1, NAN, NAN, x, 4, many, 12, NULL},
                               {"b", "x", "y", 1, 0, NAN, NAN, x, 4, many, 6, NULL}};
        svgplot_figure mf = {NULL, NULL, 2, 1};
        s = render(&mf, mp, 2, &rc);
        check(s && rc == 0, "legend_right figure written");
        if (s) {
            const char *lg = strstr(s, "class=\"legend\"");
            double lx = 0, ly = 0, lw = 0, lh = 0, W2 = 0, H2 = 0, right = 0;
            check(lg && sscanf(lg, "class=\"legend\" x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &lx, &ly, &lw,
                               &lh) == 4, "one figure legend");
            sscanf(strstr(s, "viewBox=\"") + 9, "0 0 %lf %lf", &W2, &H2);
            for (const char *t = strstr(s, "stroke=\"#444\""); t; t = strstr(t + 1, "stroke=\"#444\"")) {
                const char *r = t;
                double fx, fy, fw, fh;
                while (r > s && strncmp(r, "<rect", 5)) r--;
                if (sscanf(r, "<rect x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &fx, &fy, &fw, &fh) == 4 &&
                    fx + fw > right)
                    right = fx + fw;
            }
            check(lx > right && lx + lw <= W2 && ly + lh <= H2, "figure legend right of every plot, inside the view");
            check(count(s, "fill-opacity") == 0, "no legend inside the panels");
            check(count(s, ">pol11<") == 1 && count(s, ">pol00<") == 1, "each label once");
            check(count(s, "stroke-dasharray") >= 3, "labels past ten get a dash pattern");
            free(s);
        }
    }

    /* bad input */
    svgplot_series broken = {"x", 2, NULL, a, NULL};
    svgplot_panel bp = {"t", "x", "y", 0, 0, NAN, NAN, NULL, 0, &broken, 1, NULL};
    s = render(&fig, &bp, 1, &rc);
    check(rc == -1, "a series without x is refused");
    free(s);
    check(svgplot_write(NULL, &fig, p, 2) == -1, "NULL stream refused");
    check(svgplot_write(stdout, &fig, NULL, 1) == -1, "NULL panels refused");

    printf("svgplot: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
