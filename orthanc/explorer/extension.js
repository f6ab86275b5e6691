// cmr-node extension of Orthanc Explorer (added by orthanc.ExtendOrthancExplorer).
// On the series and study pages: whether cmr-node analysed the series, its key numbers and
// QC flags, links to the SEG / SR / summary it stored; on the lookup page: a link to the
// node's dashboard (../cmr-node/ui). Data come from the node's REST routes under ../cmr-node/.
(function () {
  var API = '../cmr-node';
  var KIND_LABELS = {
    'seg': 'Segmentation (SEG)',
    'sr': 'Contours and values (SR)',
    'sr-summary': 'Summary report (SR)',
    'summary-image': 'Summary image',
    'parametric-map': 'Fitted map (Parametric Map)',
    'parametric-map-fit': 'Fit quality (Parametric Map)'
  };

  function esc(text) {
    return $('<div/>').text(text === null || text === undefined ? '' : String(text)).html();
  }

  var UNITS = [['_ms', 'ms'], ['_pixels', 'pixels'], ['_percent', '%'], ['_mm', 'mm'],
               ['_ml', 'ml'], ['_g', 'g']];

  // 'global_myocardium_t1_mean_ms' -> {name: 'myocardium T1 mean', unit: 'ms'}
  function measure(key) {
    var name = key.replace(/^global_/, ''), unit = '';
    $.each(UNITS, function (_, pair) {
      if (!unit && name.slice(-pair[0].length) === pair[0]) {
        name = name.slice(0, -pair[0].length);
        unit = pair[1];
      }
    });
    name = name.replace(/_/g, ' ').replace(/\bt1\b/g, 'T1').replace(/\blv\b/g, 'LV')
      .replace(/\becv\b/g, 'ECV').replace(/\blge\b/g, 'LGE');
    return { name: name, unit: unit };
  }

  function number(value) {
    if (value === null || value === undefined) { return 'n/a'; }
    return (Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 10) / 10).toString();
  }

  function panel(id) {
    $('#' + id).remove();
    return $('<div/>').attr('id', id).addClass('cmr-node-panel').css({
      'border': '1px solid #888', 'border-radius': '6px', 'padding': '6px 10px',
      'margin': '10px 0', 'background': '#f6f6f2', 'font-size': '13px', 'color': '#222'
    });
  }

  function post(uri, done) {
    $.ajax({ url: API + uri, type: 'POST', data: '', dataType: 'json',
             success: done, error: function (xhr) { alert('cmr-node: ' + uri + ' failed (HTTP ' + xhr.status + ')'); } });
  }

  function valuesHtml(summary) {
    var html = '';
    var values = (summary && summary.values) || {};
    $.each(values, function (key, value) {
      var m = measure(key);
      html += '<div class="cmr-node-value" data-key="' + esc(key) + '">' + esc(m.name) +
        ': <b>' + esc(number(value)) + '</b>' + (m.unit ? ' ' + esc(m.unit) : '') + '</div>';
    });
    var flags = (summary && summary.qc_flags) || [];
    html += '<div class="cmr-node-qc" style="margin-top:4px">QC: ' +
      (flags.length ? '<span style="color:#b00">' + esc(flags.join(', ')) + '</span>' : 'no flag') +
      (summary && summary.qc_failure ? ' <b style="color:#b00">(result doubtful)</b>' : '') + '</div>';
    return html;
  }

  function outputsHtml(outputs) {
    var html = '';
    $.each(outputs || [], function (_, out) {
      if (!out.orthanc_series_id) { return; }
      html += '<div class="cmr-node-output" data-kind="' + esc(out.kind) + '">' +
        '<a href="#series?uuid=' + esc(out.orthanc_series_id) + '">' + esc(KIND_LABELS[out.kind] || out.kind) + '</a>';
      if (out.kind === 'summary-image' && out.orthanc_id) {
        html += ' (<a href="../instances/' + esc(out.orthanc_id) + '/preview" target="_blank">preview</a>)';
      }
      html += '</div>';
    });
    return html;
  }

  function stateHtml(view) {
    var job = view.job;
    if (view.role === 'output') {
      return '<div class="cmr-node-state" data-state="output">Output of cmr-node (' + esc(KIND_LABELS[view.kind] || view.kind) +
        ', job ' + esc(view.job_id) + ') for ' +
        (view.input_orthanc_series_id ? '<a href="#series?uuid=' + esc(view.input_orthanc_series_id) + '">the analysed series</a>' : 'series ' + esc(view.input_series_uid)) +
        '</div>';
    }
    if (view.analysed) {
      var done = view.result_job;
      var total = done.timings && done.timings.total_s;
      return '<div class="cmr-node-state" data-state="analysed"><b>Analysed</b> by ' + esc(done.analysis) +
        ' (job ' + esc(done.id) + (total ? ', ' + esc(number(total)) + ' s' : '') + ')' +
        (job && job.id !== done.id ? '; newer job ' + esc(job.id) + ' is ' + esc(job.state) : '') + '</div>';
    }
    if (job) {
      return '<div class="cmr-node-state" data-state="' + esc(job.state) + '">Job ' + esc(job.id) + ' (' + esc(job.analysis) + ') is <b>' +
        esc(job.state) + '</b>' + (job.error ? ': <span style="color:#b00">' + esc(job.error) + '</span>' : '') + '</div>';
    }
    if (view.series && view.series.state === 'unrouted') {
      return '<div class="cmr-node-state" data-state="unrouted">Not analysed: ' + esc(view.series.route_reason) + '</div>';
    }
    if (view.intake && view.intake.state !== 'done') {
      return '<div class="cmr-node-state" data-state="intake-' + esc(view.intake.state) + '">Intake ' + esc(view.intake.state) +
        (view.intake.message ? ': ' + esc(view.intake.message) : '') + '</div>';
    }
    return '<div class="cmr-node-state" data-state="unseen">Not seen by cmr-node yet</div>';
  }

  function seriesPanel(seriesId) {
    var box = panel('cmr-node-series').html('<b>cmr-node</b> …');
    box.insertAfter($('#series-info'));
    $.ajax({ url: API + '/series/' + seriesId, dataType: 'json', cache: false,
      success: function (view) {
        var html = '<div style="font-weight:bold;margin-bottom:4px">cmr-node</div>' + stateHtml(view);
        if (view.role === 'input') {
          if (view.result_job) { html += valuesHtml(view.result_job.summary) + outputsHtml(view.outputs); }
          html += '<div style="margin-top:6px">';
          if (view.job && view.job.state === 'failed') {
            html += '<a href="#" class="cmr-node-retry" data-job="' + esc(view.job.id) + '">Retry job</a> · ';
          }
          html += '<a href="#" class="cmr-node-rerun">Analyse again</a> · <a href="../cmr-node/ui" target="_blank">Dashboard</a></div>';
        }
        box.html(html);
        box.find('.cmr-node-rerun').click(function (e) {
          e.preventDefault();
          post('/series/' + seriesId + '/rerun', function () { seriesPanel(seriesId); });
        });
        box.find('.cmr-node-retry').click(function (e) {
          e.preventDefault();
          post('/jobs/' + $(this).data('job') + '/retry', function () { seriesPanel(seriesId); });
        });
      },
      error: function (xhr) { box.html('<b>cmr-node</b>: no answer (HTTP ' + xhr.status + ')'); }
    });
  }

  function studyPanel(studyId) {
    var box = panel('cmr-node-study').html('<b>cmr-node</b> …');
    box.insertAfter($('#study-info'));
    $.ajax({ url: API + '/studies/' + studyId, dataType: 'json', cache: false,
      success: function (answer) {
        var html = '<div style="font-weight:bold;margin-bottom:4px">cmr-node</div>';
        var inputs = $.grep(answer.series, function (v) { return v.role === 'input' && (v.job || v.series); });
        if (!inputs.length) { html += '<div class="cmr-node-state" data-state="none">No series of this study analysed</div>'; }
        $.each(inputs, function (_, view) {
          var name = (view.job && view.job.series_description) || view.series_instance_uid;
          html += '<div class="cmr-node-study-series" style="border-top:1px solid #ccc;padding:4px 0">' +
            '<a href="#series?uuid=' + esc(view.orthanc_series_id) + '">' + esc(name) + '</a>' + stateHtml(view);
          if (view.result_job) { html += valuesHtml(view.result_job.summary) + outputsHtml(view.outputs); }
          html += '</div>';
        });
        html += '<div style="margin-top:6px"><a href="../cmr-node/ui" target="_blank">Dashboard</a></div>';
        box.html(html);
      },
      error: function (xhr) { box.html('<b>cmr-node</b>: no answer (HTTP ' + xhr.status + ')'); }
    });
  }

  $('#series').live('pagebeforeshow', function () {
    if ($.mobile.pageData && $.mobile.pageData.uuid) { seriesPanel($.mobile.pageData.uuid); }
  });
  $('#study').live('pagebeforeshow', function () {
    if ($.mobile.pageData && $.mobile.pageData.uuid) { studyPanel($.mobile.pageData.uuid); }
  });
  $('#lookup').live('pagebeforeshow', function () {
    var box = panel('cmr-node-lookup');
    box.html('<b>cmr-node</b>: <a href="../cmr-node/ui" target="_blank" id="cmr-node-dashboard-link">analysis dashboard</a> (recent jobs, failures, queue)');
    $('#lookup [data-role="content"]').prepend(box);
  });
}());
