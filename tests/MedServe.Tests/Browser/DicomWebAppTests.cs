using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MedServe.Tests.Dicom;
using MedServe.Tests.Support;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace MedServe.Tests.Browser;

/// <summary>
/// DICOM in the web app, in a real browser against the real node: Try it reads a .dcm file as V2 infer does (preview,
/// the same probabilities, the segmenter's mask over the CT), the Jobs page runs a zip of .dcm files and several .dcm
/// files, and the Studies page lists a study stored over STOW-RS with the jobs it started.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class DicomWebAppTests(NodeFixture node) : IAsyncLifetime
{
    private BrowserSession _browser = null!;

    private string BaseUrl => node.Http.BaseAddress!.ToString().TrimEnd('/');

    public async Task InitializeAsync() => _browser = await BrowserSession.StartAsync();

    public async Task DisposeAsync() => await _browser.DisposeAsync();

    private static ByteArrayContent Dicom(byte[] file)
    {
        var content = new ByteArrayContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/dicom");
        return content;
    }

    private async Task<JsonNode> V2Async(string model, string file) =>
        await NodeFixture.SuccessJsonAsync(node.Http.PostAsync($"/v2/models/{model}/infer", Dicom(DicomTestFiles.Bytes(file))));

    private async Task<IPage> SignedInAsync()
    {
        var page = await _browser.NewPageAsync(BaseUrl);
        await BrowserSession.SignInAsync(page, NodeFixture.AdminKey);
        return page;
    }

    [Fact]
    public async Task Try_it_reads_a_dicom_file_as_v2_does()
    {
        var page = await SignedInAsync();
        await page.GotoAsync("/try/ct-mr-classifier");
        await BrowserSession.PickFilesAsync(page, "image-input", BrowserSession.File(DicomTestFiles.PathOf("MR_small.dcm"), "application/dicom"));
        await Expect(page.Locator("#preview-source")).ToContainTextAsync("From DICOM");
        await Expect(page.Locator("#preview-caption")).ToContainTextAsync("64 x 64 pixels, slice 0 of 1");
        await page.Locator("#predict-button").ClickAsync();
        await Expect(page.Locator("#served-version")).ToHaveTextAsync("1");

        // The bars are V2 DICOM infer's probabilities for the same file, and say MR.
        var v2 = (await V2Async("ct-mr-classifier", "MR_small.dcm"))["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "probabilities")!;
        var expected = v2["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        string[] labels = ["CT", "MR"];
        for (var i = 0; i < labels.Length; i++)
        {
            var bar = page.Locator($"[data-output=probabilities][data-label={labels[i]}]");
            await Expect(bar).ToBeVisibleAsync();
            var shown = double.Parse((await bar.GetAttributeAsync("data-value"))!, CultureInfo.InvariantCulture);
            Assert.InRange(Math.Abs(shown - expected[i]), 0, 1e-6);
        }
        Assert.True(expected[1] > 0.5, "MR_small is classified MR");
        await page.EvaluateAsync("() => window.scrollTo(0, 0)"); // the click scrolled: a full-page shot would show the app bar mid-page
        await BrowserSession.ScreenshotAsync(page, "23-try-it-dicom");

        // The bone segmenter on a CT slice: the preview at the model's 256x256, the mask V2 answers drawn over it.
        await page.GotoAsync("/try/ct-bone-segmenter");
        await BrowserSession.PickFilesAsync(page, "image-input", BrowserSession.File(DicomTestFiles.PathOf("CT_small.dcm"), "application/dicom"));
        var caption = page.Locator("#preview-caption");
        await Expect(caption).ToContainTextAsync("256 x 256 pixels, slice 0 of 1");
        await page.Locator("#predict-button").ClickAsync();
        var mask = (await V2Async("ct-bone-segmenter", "CT_small.dcm"))["outputs"]![0]!["data"]!.AsArray().Count(v => v!.GetValue<double>() >= 0.5);
        Assert.True(mask > 0, "CT_small has bone");
        await Expect(caption).ToContainTextAsync($"mask: {mask} pixels (red)");
        await page.EvaluateAsync("() => window.scrollTo(0, 0)"); // the click scrolled: a full-page shot would show the app bar mid-page
        await BrowserSession.ScreenshotAsync(page, "24-try-it-dicom-segmenter");

        // A file the model cannot take (NM for a CT/MR classifier) is refused in words.
        await page.GotoAsync("/try/ct-mr-classifier");
        await BrowserSession.PickFilesAsync(page, "image-input", BrowserSession.File(DicomTestFiles.PathOf("JPEG2000.dcm"), "application/dicom"));
        await Expect(page.Locator("#predict-error")).ToContainTextAsync("modality NM (0008,0060) is not accepted by ct-mr-classifier");
    }

    [Fact]
    public async Task The_jobs_page_runs_a_zip_of_dicom_files_and_several_dicom_files()
    {
        var page = await SignedInAsync();
        var zip = DicomJobTests.Zip(("series/CT_small.dcm", DicomTestFiles.Bytes("CT_small.dcm")), ("series/MR_small.dcm", DicomTestFiles.Bytes("MR_small.dcm")));
        await page.GotoAsync("/jobs?model=ct-mr-classifier");
        await BrowserSession.PickFilesAsync(page, "dicom-input", new FilePayload { Name = "two-series.zip", MimeType = "application/zip", Buffer = zip });
        await page.Locator("#submit-job").ClickAsync();
        await page.WaitForURLAsync(new Regex("/jobs/[0-9a-f]{16}$"), new() { WaitUntil = WaitUntilState.Commit, Timeout = 60_000 });
        await Expect(page.Locator("#job-bar")).ToHaveAttributeAsync("data-percent", "100", new() { Timeout = 60_000 });
        await Expect(page.Locator("#job-answered")).ToContainTextAsync("2 of 2");
        await Expect(page.Locator("#job-progress")).ToContainTextAsync("dicom");
        await Expect(page.Locator("#results-table tbody tr")).ToHaveCountAsync(2);
        await BrowserSession.ScreenshotAsync(page, "25-job-dicom-zip");

        // One result per file, each V2 DICOM infer's answer for that file (the CT first: its series comes first).
        var id = new Uri(page.Url).AbsolutePath.Split('/')[^1];
        var results = JsonNode.Parse(await node.Http.GetStringAsync($"/api/jobs/{id}/results?format=json"))!["results"]!.AsArray();
        foreach (var (file, k) in new[] { ("CT_small.dcm", 0), ("MR_small.dcm", 1) })
        {
            var expected = (await V2Async("ct-mr-classifier", file))["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!["data"]!.AsArray().Select(v => v!.GetValue<double>());
            var actual = results[k]!["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!["data"]!.AsArray().Select(v => v!.GetValue<double>());
            Assert.All(expected.Zip(actual), p => Assert.InRange(Math.Abs(p.First - p.Second), 0, 1e-5));
        }

        // Several .dcm files picked at once.
        await page.GotoAsync("/jobs?model=ct-mr-classifier");
        await BrowserSession.PickFilesAsync(page, "dicom-input",
            BrowserSession.File(DicomTestFiles.PathOf("CT_small.dcm"), "application/dicom"), BrowserSession.File(DicomTestFiles.PathOf("MR_small.dcm"), "application/dicom"));
        await Expect(page.Locator("#dicom-button")).ToContainTextAsync("2 files");
        await page.Locator("#submit-job").ClickAsync();
        await page.WaitForURLAsync(new Regex("/jobs/[0-9a-f]{16}$"), new() { WaitUntil = WaitUntilState.Commit, Timeout = 60_000 });
        await Expect(page.Locator("#job-answered")).ToContainTextAsync("2 of 2", new() { Timeout = 60_000 });

        // A zip that climbs out of itself is refused in words, naming no file.
        await page.GotoAsync("/jobs?model=ct-mr-classifier");
        var slip = DicomJobTests.Zip(("../PATIENT_NAME.dcm", DicomTestFiles.Bytes("MR_small.dcm")));
        await BrowserSession.PickFilesAsync(page, "dicom-input", new FilePayload { Name = "slip.zip", MimeType = "application/zip", Buffer = slip });
        await page.Locator("#submit-job").ClickAsync();
        await Expect(page.Locator("#job-error")).ToContainTextAsync("leaves the archive");
        await Expect(page.Locator("#job-error")).Not.ToContainTextAsync("PATIENT");
    }

    [Fact]
    public async Task The_studies_page_lists_a_study_stored_over_stow_with_its_jobs()
    {
        using var multipart = new MultipartContent("related", "medserve-web-stow");
        multipart.Headers.ContentType!.Parameters.Add(new NameValueHeaderValue("type", "\"application/dicom\""));
        multipart.Add(Dicom(DicomTestFiles.Bytes("CT_small.dcm")));
        var stored = await NodeFixture.SuccessJsonAsync(node.Http.PostAsync("/dicomweb/studies", multipart));
        var url = stored["00081190"]!["Value"]![0]!.GetValue<string>();
        var study = url[(url.LastIndexOf('/') + 1)..];
        Assert.StartsWith("2.25.", study, StringComparison.Ordinal);

        var page = await SignedInAsync();
        await page.GotoAsync("/");
        await page.Locator("#nav-studies").ClickAsync();
        var row = page.Locator("#studies-table tbody tr", new() { Has = page.Locator($"[data-study='{study}']") });
        await Expect(row).ToHaveCountAsync(1);
        await Expect(row.Locator("[data-instances]")).ToHaveTextAsync("1");
        await Expect(row.Locator("[data-modalities]")).ToHaveTextAsync("CT");
        // A CT series matches both imaging samples' routing rules: a job on each, which the page watches until done.
        await Expect(row.Locator(".study-job")).ToHaveCountAsync(2);
        var classifier = row.Locator(".study-job[data-model=ct-mr-classifier]");
        await Expect(classifier.Locator("[data-state=Completed]")).ToBeVisibleAsync(new() { Timeout = 60_000 });
        await Expect(row.Locator(".study-job[data-model=ct-bone-segmenter] [data-state=Completed]")).ToBeVisibleAsync(new() { Timeout = 60_000 });
        await BrowserSession.ScreenshotAsync(page, "26-studies");

        // Its job's link opens the job: one item, answered.
        await classifier.Locator("a").ClickAsync();
        await page.WaitForURLAsync(new Regex("/jobs/study-[0-9a-f]{24}$"), new() { WaitUntil = WaitUntilState.Commit });
        await Expect(page.Locator("#job-answered")).ToContainTextAsync("1 of 1");
    }
}
