using Microsoft.Playwright;

namespace MedServe.Tests.Support;

/// <summary>
/// Debian's chromium driven by Playwright (its bundled driver; no browser download), headless, with the flags this
/// machine needs (no sandbox as root, no background networking on a closed network). Screenshots go to
/// <c>TestResults/screenshots</c>.
/// </summary>
public sealed class BrowserSession : IAsyncDisposable
{
    public const string Chromium = "/usr/bin/chromium";

    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;

    private BrowserSession(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        _browser = browser;
    }

    public static string ScreenshotDirectory { get; } = Path.Combine(Paths.Repo, "TestResults", "screenshots");

    public static async Task<BrowserSession> StartAsync()
    {
        if (!System.IO.File.Exists(Chromium))
        {
            throw new InvalidOperationException($"{Chromium} is missing: test.sh installs Debian's chromium (apt-get install chromium)");
        }
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        return new BrowserSession(playwright, browser);
    }

    /// <summary>A fresh page (its own context: cookies, downloads) of the given size.</summary>
    public async Task<IPage> NewPageAsync(string baseUrl, int width = 1280, int height = 800)
    {
        var context = await _browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = baseUrl,
            ViewportSize = new ViewportSize { Width = width, Height = height },
            AcceptDownloads = true,
        });
        context.SetDefaultTimeout(30_000);
        return await context.NewPageAsync();
    }

    /// <summary>Saves a screenshot (the whole page, or what the window shows) as <c>TestResults/screenshots/{name}.png</c>.</summary>
    public static async Task ScreenshotAsync(IPage page, string name, bool fullPage = true)
    {
        Directory.CreateDirectory(ScreenshotDirectory);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDirectory, name + ".png"), FullPage = fullPage });
    }

    /// <summary>
    /// Picks files in a Blazor file input (the last input with class <paramref name="inputClass"/>: MudFileUpload adds
    /// a fresh one after each pick) once Blazor has hooked it up; files set before that would go unnoticed.
    /// </summary>
    public static async Task PickFilesAsync(IPage page, string inputClass, params FilePayload[] files)
    {
        await page.WaitForFunctionAsync(
            "c => { const all = document.querySelectorAll('input[type=file].' + c); const e = all[all.length - 1]; return !!e && e._blazorInputFileNextFileId !== undefined; }",
            inputClass);
        await page.Locator($"input[type=file].{inputClass}").Last.SetInputFilesAsync(files);
    }

    /// <summary>Signs in with a key on the sign-in page, as a person would, and waits for the app to show who is signed in.</summary>
    public static async Task SignInAsync(IPage page, string key)
    {
        await page.GotoAsync("/signin");
        await page.Locator("#key").FillAsync(key);
        await page.Locator("#signin-button").ClickAsync();
        await Assertions.Expect(page.Locator("#signed-in-as")).ToBeVisibleAsync(new() { Timeout = 30_000 });
    }

    /// <summary>A file on disk as a pick.</summary>
    public static FilePayload File(string path, string mimeType) =>
        new() { Name = Path.GetFileName(path), MimeType = mimeType, Buffer = System.IO.File.ReadAllBytes(path) };

    public async ValueTask DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }
}
