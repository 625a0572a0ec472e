// MedServe web app: draws tensors onto canvases (no image encoding on the server, nothing leaves the page).
window.medserve = {
  // gray: Uint8Array of width*height 0-255 values; draws it as a grayscale image.
  drawGray: function (canvasId, width, height, gray) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return;
    canvas.width = width; canvas.height = height;
    const ctx = canvas.getContext('2d');
    const image = ctx.createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      const v = gray[i];
      image.data[4 * i] = v; image.data[4 * i + 1] = v; image.data[4 * i + 2] = v; image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  },
  // mask: Uint8Array of width*height 0/1 values; draws the 1s in translucent red over a transparent canvas.
  drawMask: function (canvasId, width, height, mask) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return;
    canvas.width = width; canvas.height = height;
    const ctx = canvas.getContext('2d');
    const image = ctx.createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      if (mask[i]) { image.data[4 * i] = 255; image.data[4 * i + 1] = 40; image.data[4 * i + 2] = 40; image.data[4 * i + 3] = 140; }
    }
    ctx.putImageData(image, 0, 0);
  }
};
