//! Drawing plots: the embedded font, the palette, the PNG canvas, messages and legends.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Size of every plot, in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 600;

pub(super) const LEGEND_WIDTH: u32 = 230;
pub(super) const FONT: &str = "sans-serif";
pub(super) const DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// matplotlib's tab10: ten well-separated hues before a fold's colour repeats.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(super) const INK: RGBColor = RGBColor(60, 60, 60);
pub(super) const GRID: RGBColor = RGBColor(232, 232, 232);

pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(super) fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if !ok {
        bail!("the embedded DejaVuSans.ttf is not a usable font");
    }
    Ok(())
}

/// Draws into an in-memory RGB canvas and encodes it as PNG; a panic inside plotters becomes
/// an error so that it cannot take down a run whose model is already written.
pub(super) fn render_png(draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Vec<u8>> {
    register_font()?;
    let mut rgb = vec![255u8; WIDTH as usize * HEIGHT as usize * 3];
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root.margin(8, 8, 8, 8))?;
        root.present()?;
        Ok(())
    }));
    match outcome {
        Ok(result) => result?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            return Err(anyhow!("plotting panicked: {what}"));
        }
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, rgb)
        .ok_or_else(|| anyhow!("plot canvas has the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding PNG")?;
    Ok(png)
}

pub(super) fn text_style(size: u32, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    let mut style = TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v));
    style.color = colour.to_backend_color();
    style
}

/// Centred grey lines in place of a plot that has nothing to show, so a stale plot from an
/// earlier run in the same folder is overwritten rather than left to mislead.
pub(super) fn draw_message(area: &Area<'_>, lines: &[&str]) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let style = text_style(18, RGBColor(90, 90, 90), HPos::Center, VPos::Center);
    let top = h as i32 / 2 - (lines.len() as i32 - 1) * 14;
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            *line,
            (w as i32 / 2, top + i as i32 * 28),
            style.clone(),
        ))?;
    }
    Ok(())
}

pub(super) enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Swatch(RGBColor),
}

/// A legend drawn beside the chart rather than over it, where it can hide no curve however
/// many folds there are. A label may hold `\n` for a second line.
pub(super) fn draw_legend(area: &Area<'_>, entries: &[(Mark, String)]) -> Result<()> {
    let style = text_style(14, BLACK, HPos::Left, VPos::Center);
    let (x, mut y) = (12, 40);
    for (mark, label) in entries {
        match mark {
            Mark::Line(c) => area.draw(&PathElement::new(
                vec![(x, y), (x + 30, y)],
                c.stroke_width(2),
            ))?,
            Mark::Dashed(c) => {
                for k in 0..3 {
                    let a = x + k * 11;
                    area.draw(&PathElement::new(
                        vec![(a, y), (a + 7, y)],
                        c.stroke_width(2),
                    ))?;
                }
            }
            Mark::Dot(c) => area.draw(&Circle::new((x + 15, y), 5, c.filled()))?,
            Mark::Swatch(c) => area.draw(&Rectangle::new(
                [(x + 6, y - 7), (x + 24, y + 7)],
                c.filled(),
            ))?,
        }
        for line in label.split('\n') {
            area.draw(&Text::new(line, (x + 40, y), style.clone()))?;
            y += 19;
        }
        y += 6;
    }
    Ok(())
}

pub(super) fn legend_split<'a>(area: &Area<'a>) -> (Area<'a>, Area<'a>) {
    let w = area.dim_in_pixel().0;
    area.split_horizontally(w.saturating_sub(LEGEND_WIDTH))
}
