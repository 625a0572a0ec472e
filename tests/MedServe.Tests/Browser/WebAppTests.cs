using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Dashboard.Security;
using MedServe.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace MedServe.Tests.Browser;

/// <summary>
/// The web app in a real browser (Debian's chromium, driven by Playwright) against the real embedded node: a new user's
/// path from uploading a model to reading a job's results, with a screenshot of every page.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class WebAppTests(NodeFixture node) : IAsyncLifetime
{
    private BrowserSession _browser = null!;

    private string BaseUrl => node.Http.BaseAddress!.ToString().TrimEnd('/');

    public async Task InitializeAsync() => _browser = await BrowserSession.StartAsync();

    public async Task DisposeAsync() => await _browser.DisposeAsync();

    [Fact]
    public async Task A_new_user_uploads_deploys_predicts_runs_a_job_and_watches_the_cluster()
    {
        var page = await _browser.NewPageAsync(BaseUrl);
        await BrowserSession.SignInAsync(page, NodeFixture.AdminKey);
        var name = "web-logreg-" + Guid.NewGuid().ToString("N")[..6];
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(Paths.Samples, "breast-cancer-logreg", "manifest.json")))!;
        manifest["name"] = name;

        // Models: the registry as a table, the samples Ready.
        await page.GotoAsync("/");
        await Expect(page.Locator("#models-table")).ToContainTextAsync("breast-cancer-logreg");
        await Expect(page.Locator("#models-table [data-state=Ready]").First).ToBeVisibleAsync();
        await BrowserSession.ScreenshotAsync(page, "01-models");

        // Upload a sample under a new name (manifest + model), deployed at once; a bad manifest's error names its field.
        await page.GotoAsync("/upload");
        var bad = manifest.DeepClone();
        bad["accelerator"] = "tpu";
        await BrowserSession.PickFilesAsync(page, "manifest-input", new FilePayload { Name = "manifest.json", MimeType = "application/json", Buffer = Encoding.UTF8.GetBytes(bad.ToJsonString()) });
        await BrowserSession.PickFilesAsync(page, "model-input", BrowserSession.File(Path.Combine(Paths.Samples, "breast-cancer-logreg", "model.onnx"), "application/octet-stream"));
        await page.Locator("#upload-button").ClickAsync();
        await Expect(page.Locator("#manifest-error")).ToContainTextAsync("manifest.accelerator");
        await BrowserSession.ScreenshotAsync(page, "02-upload-error");
        await BrowserSession.PickFilesAsync(page, "manifest-input", new FilePayload { Name = "manifest.json", MimeType = "application/json", Buffer = Encoding.UTF8.GetBytes(manifest.ToJsonString()) });
        await page.Locator("#upload-button").ClickAsync();
        await Expect(page.Locator("#upload-done")).ToContainTextAsync(name);
        await Expect(page.Locator("#upload-progress")).ToBeVisibleAsync();
        await BrowserSession.ScreenshotAsync(page, "03-upload-done");

        // Its model card: Ready after validation, with its replica and the validation report.
        await page.Locator("#open-card").ClickAsync();
        await Expect(page.Locator("#deployment-panel [data-state=Ready]")).ToBeVisibleAsync(new() { Timeout = 60_000 });
        await Expect(page.Locator("#validation-report")).ToContainTextAsync("Passed");
        await Expect(page.Locator("#replicas")).ToContainTextAsync($"{name}/1/0/");
        await Expect(page.Locator("#sha256")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("^[0-9a-f]{64}$"));
        await BrowserSession.ScreenshotAsync(page, "04-model-card");

        // Try it: the form is prefilled from the validation sample; the page shows what V2 answers for the same input.
        await page.GotoAsync($"/try/{name}");
        await Expect(page.Locator("#feature-form input")).ToHaveCountAsync(30);
        await page.Locator("#predict-button").ClickAsync();
        await Expect(page.Locator("#served-version")).ToHaveTextAsync("1");
        await Expect(page.Locator("#served-replica")).ToContainTextAsync($"{name}/1/");
        var shown = new[] { "malignant", "benign" }.Select(label => page.Locator($"[data-output=probabilities][data-label={label}]"));
        var sample = manifest["validation"]!["samples"]![0]!["inputs"]!["input"]!["data"]!.AsArray().Select(v => v!.GetValue<double>()).Take(30).ToArray();
        var v2 = await NodeFixture.SuccessJsonAsync(node.Http.PostAsJsonAsync($"/v2/models/{name}/infer", new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = sample } },
            outputs = new[] { new { name = "probabilities" } },
        }));
        var expected = v2["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>()).Take(30).ToArray();
        var i = 0;
        foreach (var bar in shown)
        {
            var value = double.Parse((await bar.GetAttributeAsync("data-value"))!, CultureInfo.InvariantCulture);
            Assert.InRange(Math.Abs(value - expected[i++]), 0, 1e-6);
        }
        await BrowserSession.ScreenshotAsync(page, "05-try-it");

        // A job: the 143-row CSV as it is (no column list): the bar reaches 100%, results page and download.
        await page.GotoAsync("/jobs?model=breast-cancer-logreg");
        await BrowserSession.PickFilesAsync(page, "csv-input", BrowserSession.File(Paths.Data("tabular", "breast_cancer_test.csv"), "text/csv"));
        await page.Locator("#submit-job").ClickAsync();
        // Blazor navigates inside the page: wait for the address, not for a page load.
        await page.WaitForURLAsync(new System.Text.RegularExpressions.Regex("/jobs/[0-9a-f]{16}$"), new() { WaitUntil = WaitUntilState.Commit, Timeout = 60_000 });
        await Expect(page.Locator("#job-bar")).ToHaveAttributeAsync("data-percent", "100", new() { Timeout = 60_000 });
        await Expect(page.Locator("#job-answered")).ToContainTextAsync("143 of 143");
        await Expect(page.Locator("#results-table tbody tr")).ToHaveCountAsync(25);
        await BrowserSession.ScreenshotAsync(page, "06-job");
        // Pages are read from the job one at a time: the next one holds items 26 to 50.
        await page.Locator("#results-table").GetByRole(AriaRole.Button, new() { Name = "Next page" }).ClickAsync();
        await Expect(page.Locator("#results-table tbody tr").First.Locator("td").First).ToHaveTextAsync("26");
        await Expect(page.Locator("#results-table")).ToContainTextAsync("26-50 of 143");
        var download = await page.RunAndWaitForDownloadAsync(() => page.Locator("#download-csv").ClickAsync());
        var lines = await File.ReadAllLinesAsync((await download.PathAsync())!);
        Assert.Equal(144, lines.Length);
        Assert.StartsWith("id,error,probabilities_0,probabilities_1", lines[0], StringComparison.Ordinal);
        var rows = TestData.BreastCancer();
        foreach (var line in lines.Skip(1))
        {
            var cells = line.Split(',');
            var row = rows[int.Parse(cells[0], CultureInfo.InvariantCulture) - 1];
            Assert.InRange(Math.Abs(double.Parse(cells[3], CultureInfo.InvariantCulture) - row.PBenignLogreg), 0, 1e-4);
        }
        await page.GotoAsync("/jobs");
        await Expect(page.Locator("#jobs-table")).ToContainTextAsync("breast-cancer-logreg");
        await BrowserSession.ScreenshotAsync(page, "07-jobs");

        // Placement: the new replica on its silo, with the silo's accelerator and execution provider.
        await page.GotoAsync("/cluster");
        var silo = page.Locator(".silo", new() { Has = page.Locator($"[data-replica^='{name}/1/0/']") });
        await Expect(silo).ToHaveCountAsync(1);
        await Expect(silo).ToContainTextAsync("CPUExecutionProvider");
        await BrowserSession.ScreenshotAsync(page, "08-placement");

        // Latency: the deployment's row with the request sent above, and a chart with data.
        await page.GotoAsync("/latency");
        var latencyRow = page.Locator("#latency-table tbody tr", new() { HasText = name });
        await Expect(latencyRow).ToBeVisibleAsync();
        await latencyRow.ClickAsync();
        await Expect(page.Locator("#chart-latency svg").First).ToBeVisibleAsync();
        await Expect(page.Locator("#chart-batch svg rect, #chart-batch svg path").First).ToBeAttachedAsync();
        await BrowserSession.ScreenshotAsync(page, "09-latency");

        // The API reference and the Orleans Dashboard are linked from the app and load.
        await page.GotoAsync("/api-reference");
        await Expect(page.Locator("body")).ToContainTextAsync("MedServe management API", new() { Timeout = 30_000 });
        await BrowserSession.ScreenshotAsync(page, "10-api-reference");
        using (var openApi = await node.Http.GetAsync("/openapi/management.json"))
        {
            var document = JsonNode.Parse(await openApi.Content.ReadAsStringAsync())!;
            Assert.NotNull(document["paths"]!["/api/deployments/{name}/{version}"]);
            Assert.Null(document["paths"]!["/v2/models/{name}/infer"]);
        }
        var orleansCalls = new List<string>();
        page.Response += (_, r) => { if (r.Url.Contains("/orleans/", StringComparison.Ordinal)) { lock (orleansCalls) { orleansCalls.Add($"{r.Status} {r.Url}"); } } };
        await page.GotoAsync("/orleans/");
        try
        {
            await Expect(page.GetByText("Methods with Most Calls")).ToBeVisibleAsync(new() { Timeout = 30_000 });
        }
        catch (PlaywrightException e)
        {
            await BrowserSession.ScreenshotAsync(page, "FAILED-orleans-dashboard");
            lock (orleansCalls)
            {
                throw new InvalidOperationException("the Orleans Dashboard did not load; its calls: " + string.Join("; ", orleansCalls.Take(30)), e);
            }
        }
        await BrowserSession.ScreenshotAsync(page, "11-orleans-dashboard");

        // The big screen too.
        var wide = await _browser.NewPageAsync(BaseUrl, 1920, 1080);
        await BrowserSession.SignInAsync(wide, NodeFixture.AdminKey);
        await wide.GotoAsync("/");
        await Expect(wide.Locator("#models-table")).ToContainTextAsync(name);
        await BrowserSession.ScreenshotAsync(wide, "12-models-1920", fullPage: false);
        await wide.GotoAsync("/latency");
        await wide.Locator("#latency-table tbody tr", new() { HasText = name }).ClickAsync();
        await Expect(wide.Locator("#chart-latency svg").First).ToBeVisibleAsync();
        await BrowserSession.ScreenshotAsync(wide, "14-latency-1920", fullPage: false);
    }

    [Fact]
    public async Task An_image_tensor_is_previewed_and_the_segmenters_mask_matches_what_v2_answers()
    {
        var page = await _browser.NewPageAsync(BaseUrl);
        await BrowserSession.SignInAsync(page, NodeFixture.AdminKey);
        await page.GotoAsync("/try/ct-bone-segmenter");
        var file = Paths.Data("images", "cranium_test_ct_22x1x64x64.f32");
        await BrowserSession.PickFilesAsync(page, "image-input", BrowserSession.File(file, "application/octet-stream"));
        await Expect(page.Locator("#preview-image")).ToBeVisibleAsync();
        var caption = page.Locator("#preview-caption");
        await Expect(caption).ToContainTextAsync("64 x 64 pixels, slice 0 of 22");
        await page.Locator("#predict-button").ClickAsync();
        await Expect(caption).ToContainTextAsync("mask:");

        // The same slice through V2: the page's red pixels are the mask's pixels at the manifest's threshold.
        var slice = TestData.Floats("images", "cranium_test_ct_22x1x64x64.f32").AsSpan(0, 64 * 64).ToArray();
        var v2 = await NodeFixture.SuccessJsonAsync(node.Http.PostAsJsonAsync("/v2/models/ct-bone-segmenter/infer", new
        {
            inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 64, 64 }, data = slice } },
        }));
        var mask = v2["outputs"]![0]!["data"]!.AsArray().Count(v => v!.GetValue<double>() >= 0.5);
        Assert.True(mask > 0, "the cranium slice has bone");
        await Expect(caption).ToContainTextAsync($"mask: {mask} pixels (red)");
        await BrowserSession.ScreenshotAsync(page, "15-try-it-segmenter");
    }

    [Fact]
    public async Task An_admin_makes_a_key_a_clinician_signs_in_with_it_and_the_audit_trail_shows_both()
    {
        var admin = await _browser.NewPageAsync(BaseUrl);
        await BrowserSession.SignInAsync(admin, NodeFixture.AdminKey);
        await admin.GotoAsync("/keys");
        var name = "ward 7 " + Guid.NewGuid().ToString("N")[..4];
        await admin.Locator("#key-name").FillAsync(name);
        await admin.Locator("#create-key").ClickAsync();
        await Expect(admin.Locator("#new-key-secret")).ToContainTextAsync("msk_");
        var key = (await admin.Locator("#new-key-secret").InnerTextAsync()).Trim();
        await Expect(admin.Locator("#keys-table")).ToContainTextAsync(name);
        await BrowserSession.ScreenshotAsync(admin, "16-keys");

        // A wrong key is refused in words; the new clinician key signs in, may try models, may not upload.
        var clinician = await _browser.NewPageAsync(BaseUrl);
        await clinician.GotoAsync("/signin");
        await clinician.Locator("#key").FillAsync("msk_000000000000_wrong");
        await clinician.Locator("#signin-button").ClickAsync();
        await Expect(clinician.Locator("#signin-error")).ToContainTextAsync("not known");
        await BrowserSession.ScreenshotAsync(clinician, "17-signin-refused");
        await BrowserSession.SignInAsync(clinician, key);
        await Expect(clinician.Locator("#signed-in-as")).ToContainTextAsync("clinician");
        await clinician.GotoAsync("/try/diabetes-linear");
        await Expect(clinician.Locator("#predict-button")).ToBeVisibleAsync();
        await clinician.Locator("#predict-button").ClickAsync();
        await Expect(clinician.Locator("#served-version")).ToHaveTextAsync("1");
        await clinician.GotoAsync("/upload");
        await Expect(clinician.Locator("body")).ToContainTextAsync("Not allowed");

        // The trail names both (key ids, never keys) and its chain holds.
        await node.Services.GetRequiredService<AuditWriter>().FlushAsync();
        await admin.GotoAsync("/audit");
        var id = ApiKeys.IdOf(key)!;
        await Expect(admin.Locator("#audit-table")).ToContainTextAsync(AuditActions.KeyCreate);
        await Expect(admin.Locator("#audit-table tr", new() { HasText = AuditActions.SignIn }).Filter(new() { HasText = id }).First).ToBeVisibleAsync();
        await Expect(admin.Locator("#audit-table tr", new() { HasText = AuditActions.Infer }).Filter(new() { HasText = id }).First).ToBeVisibleAsync();
        await Expect(admin.Locator("#audit-table")).Not.ToContainTextAsync(key);
        await admin.Locator("#audit-verify").ClickAsync();
        await Expect(admin.Locator("#audit-verify-result")).ToContainTextAsync("The chain holds");
        await BrowserSession.ScreenshotAsync(admin, "18-audit");
    }

    [Fact]
    public async Task Errors_are_shown_in_words_and_unknown_pages_say_so()
    {
        var page = await _browser.NewPageAsync(BaseUrl);
        await BrowserSession.SignInAsync(page, NodeFixture.AdminKey);
        await page.GotoAsync("/models/no-such-model/versions/1");
        await Expect(page.Locator(".mud-alert")).ToContainTextAsync("no version '1'");
        await page.GotoAsync("/try/no-such-model");
        await Expect(page.Locator(".mud-alert")).ToContainTextAsync("unknown model 'no-such-model'");
        await page.GotoAsync("/jobs/0000000000000000");
        await Expect(page.Locator(".mud-alert")).ToContainTextAsync("There is no such job");

        // A CSV that lacks a feature: the error names it.
        await page.GotoAsync("/jobs?model=breast-cancer-logreg");
        var csv = string.Join('\n', File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Select(l => string.Join(',', l.Split(',').Where((_, k) => k != 23))));
        await BrowserSession.PickFilesAsync(page, "csv-input", new FilePayload { Name = "missing.csv", MimeType = "text/csv", Buffer = Encoding.UTF8.GetBytes(csv) });
        await page.Locator("#submit-job").ClickAsync();
        await Expect(page.Locator("#job-error")).ToContainTextAsync("worst area");
        await BrowserSession.ScreenshotAsync(page, "13-job-error");
    }
}
