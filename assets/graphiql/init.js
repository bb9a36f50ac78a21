// Starts GraphiQL against this server: queries and mutations over `POST /graphql`,
// subscriptions over `/graphql/ws` (graphql-transport-ws, through the graphql-ws client
// that GraphiQL's bundle includes). Admin fields need a key: put it in the Headers tab as
// {"authorization": "Bearer srk_…"}. GraphiQL also sends those headers as the WebSocket's
// `connection_init` payload, where the server reads the lower-case `authorization`.
// If the admin page in this tab already holds a key, it is filled in.
(function () {
  'use strict';
  var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  var fetcher = GraphiQL.createFetcher({
    url: window.location.origin + '/graphql',
    subscriptionUrl: scheme + '//' + window.location.host + '/graphql/ws',
  });

  var key = null;
  try {
    key = window.sessionStorage.getItem('stockroom.adminKey');
  } catch (err) {
    key = null;
  }
  var headers = JSON.stringify({ authorization: 'Bearer ' + (key || 'srk_paste_your_key_here') }, null, 2);

  var defaultQuery = [
    '# Stockroom GraphQL API. Admin fields need an API key: set it in the Headers',
    '# tab below as {"authorization": "Bearer srk_..."} (also used for subscriptions).',
    '',
    'query Stock {',
    '  inventoryItems(first: 10) {',
    '    nodes {',
    '      sku',
    '      title',
    '      levels { location { name } stockedQuantity reservedQuantity available version }',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: headers,
      headerEditorEnabled: true,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: 'headers',
    })
  );
})();
